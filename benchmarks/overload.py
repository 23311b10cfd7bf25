"""The inference server under hostile load: 10x `--rows` streaming clients at once, a third hanging up
after three chunks, a quarter reading one chunk per 50 ms, in `--rounds` rounds; /health probed every
100 ms from a thread of its own throughout.

Per round: client answers by status, /health latency (p50, p99, max), the server's resident memory after
the round, and how long the engine took to let go of every abandoned request.

    .venv/bin/python benchmarks/overload.py [--rows 64] [--rounds 3] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess


async def client(http: httpx.AsyncClient, url: str, kind: str, max_tokens: int, statuses: Counter) -> None:
    body = {
        "model": "tiny",
        "prompt": "overload",
        "max_tokens": max_tokens,
        "stream": True,
        "ignore_eos": True,
    }
    try:
        async with http.stream("POST", f"{url}/v1/completions", json=body) as response:
            statuses[response.status_code] += 1
            chunks = 0
            async for _ in response.aiter_lines():
                chunks += 1
                if kind == "hang-up" and chunks == 3:
                    return
                if kind == "slow":
                    await asyncio.sleep(0.05)
    except httpx.HTTPError as e:
        statuses[type(e).__name__] += 1


async def clients(url: str, count: int, max_tokens: int) -> Counter:
    statuses: Counter = Counter()
    kinds = ["hang-up"] * (count // 3) + ["slow"] * (count // 4)
    kinds += ["reader"] * (count - len(kinds))
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await asyncio.gather(*(client(http, url, kind, max_tokens, statuses) for kind in kinds))
    return statuses


def rss_mb(pid: int) -> float:
    line = next(li for li in Path(f"/proc/{pid}/status").read_text().splitlines() if li.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def busy(url: str) -> float:
    figures = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        figures[name] = value
    return float(figures["asyncrl_requests_running"]) + float(figures["asyncrl_requests_waiting"])


def one_round(url: str, count: int, max_tokens: int) -> tuple[Counter, list[float], float]:
    """The clients' answers, the /health latencies meanwhile, and the round's wall time."""
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=30) as http:
            while not done.is_set():
                start = time.perf_counter()
                http.get(f"{url}/health")
                latencies.append(time.perf_counter() - start)
                time.sleep(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.perf_counter()
    statuses = asyncio.run(clients(url, count, max_tokens))
    wall = time.perf_counter() - started
    done.set()
    prober.join()
    return statuses, latencies, wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=64, help="inference.max_num_seqs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    count = 10 * args.rows
    config = InferenceConfig(port=0, num_threads=args.threads, max_num_seqs=args.rows)
    log = Path(tempfile.mkdtemp()) / "server.log"
    with InferenceServerProcess(ModelConfig(path="tiny"), config, 0, log) as server:
        pid = server.process.pid
        print(f"{count} streaming clients a round, max_num_seqs {args.rows}, tiny on {args.threads} threads; "
              f"server RSS at start {rss_mb(pid):.0f} MiB")  # fmt: skip
        header = ("round", "answers", "health p50", "p99", "max", "RSS after", "released", "wall")
        print("{:>5} {:<22} {:>10} {:>8} {:>8} {:>10} {:>9} {:>7}".format(*header))
        for round_ in range(1, args.rounds + 1):
            statuses, latencies, wall = one_round(server.url, count, args.max_tokens)
            waited = time.perf_counter()
            while busy(server.url):
                time.sleep(0.05)
            released = time.perf_counter() - waited
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str))
            p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]  # never beyond the max
            ms = [statistics.median(latencies) * 1e3, p99 * 1e3, max(latencies) * 1e3]
            print(f"{round_:>5} {answers:<22} {ms[0]:>8.1f}ms {ms[1]:>6.1f}ms {ms[2]:>6.1f}ms "
                  f"{rss_mb(pid):>7.0f}MiB {released:>8.2f}s {wall:>6.1f}s")  # fmt: skip
        print(f"tracebacks in the server log: {log.read_text().count('Traceback')}")


if __name__ == "__main__":
    main()
