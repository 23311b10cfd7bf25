"""Ten times more streaming clients than batch rows, a third of them hanging up mid-stream and a quarter
reading slowly: the server keeps answering /health within a second, never answers 500, lets go of every
abandoned request, and holds its memory."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess

ROWS = 4
CLIENTS = 10 * ROWS


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _client(http: httpx.AsyncClient, url: str, kind: str, statuses: list[int]) -> None:
    body = {"model": "tiny", "prompt": "overload", "max_tokens": 64, "stream": True, "ignore_eos": True}
    async with http.stream("POST", f"{url}/v1/completions", json=body) as response:
        statuses.append(response.status_code)
        chunks = 0
        async for _ in response.aiter_lines():
            chunks += 1
            if kind == "hang-up" and chunks == 3:
                return  # leaving the block closes the connection mid-stream
            if kind == "slow":
                await asyncio.sleep(0.05)


async def _clients(url: str) -> list[int]:
    statuses: list[int] = []
    kinds = ["hang-up"] * 13 + ["slow"] * 10 + ["reader"] * (CLIENTS - 23)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(_client(http, url, kind, statuses) for kind in kinds))
    return statuses


def _load(url: str) -> tuple[list[int], list[float]]:
    """Run the clients; meanwhile probe /health from a thread of its own, every 0.1 s."""
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=10) as http:
            while not done.is_set():
                start = time.perf_counter()
                assert http.get(f"{url}/health").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        statuses = asyncio.run(_clients(url))
    finally:
        done.set()
        prober.join()
    return statuses, latencies


def _gauge(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"asyncrl_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name}")


@pytest.mark.slow
def test_many_hostile_streaming_clients_leave_the_server_healthy_and_its_memory_flat(tmp_path):
    config = InferenceConfig(port=0, num_threads=1, max_num_seqs=ROWS)
    with InferenceServerProcess(ModelConfig(path="tiny"), config, 0, tmp_path / "server.log") as server:
        pid = server.process.pid
        rounds = []
        for _ in range(3):
            statuses, latencies = _load(server.url)
            rounds.append(_rss_mb(pid))
            assert statuses == [200] * CLIENTS
            assert max(latencies) < 1.0, max(latencies)
            deadline = time.monotonic() + 10  # abandoned requests are aborted, not left to decode
            while _gauge(server.url, "requests_running") + _gauge(server.url, "requests_waiting"):
                assert time.monotonic() < deadline, "requests of clients that hung up still hold rows"
                time.sleep(0.1)
        # The first round grows caches to their size; later ones must not keep growing.
        assert rounds[2] - rounds[1] < 20, rounds
        assert "Traceback" not in (tmp_path / "server.log").read_text()
