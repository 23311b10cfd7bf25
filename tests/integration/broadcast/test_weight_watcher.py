"""The orchestrator's weight watcher with `orchestrator.weights.sources`: it learns new versions from the
broadcast sources, never from the run dir, and asks the servers to fetch them from there."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from asyncrl.broadcast.config import WeightSourcesConfig
from asyncrl.orchestrator.config import ClientConfig
from asyncrl.orchestrator.pool import InferencePool
from asyncrl.orchestrator.weights import WeightWatcher
from tests.integration.broadcast.nodes import AppThread, NodeThread, random_tensors, write_step


class FakeServer(AppThread):
    """An inference server that records /update_weights and refuses it while `refuse` is set."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refuse = False
        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.post("/update_weights")
        async def update_weights(body: dict[str, Any]) -> JSONResponse:
            self.bodies.append(body)
            if self.refuse:
                return JSONResponse({"error": {"message": "no source answered"}}, status_code=400)
            return JSONResponse({"status": "ok", "policy_version": body["version"]})

        super().__init__(app)


def _updates(watcher: WeightWatcher, pool: InferencePool, rounds: int) -> list[bool]:
    async def go() -> list[bool]:
        async with pool:
            return [await watcher.update() for _ in range(rounds)]

    return asyncio.run(go())


def test_the_watcher_loads_the_newest_version_of_the_sources_through_them(tmp_path):
    write_step(tmp_path / "weights", 2, random_tensors(0))
    with NodeThread(weights_dir=tmp_path / "weights") as origin, FakeServer() as server:
        origin.wait_for_version(2)
        pool = InferencePool(ClientConfig(base_urls=[server.url], retries=0), "tiny")
        # The run dir the watcher is given has no weights: only the sources can tell it about v2.
        sources = WeightSourcesConfig(sources=[origin.url])
        watcher = WeightWatcher(tmp_path / "elsewhere", pool, sources=sources)
        assert _updates(watcher, pool, 2) == [True, False]  # nothing newer the second time
    assert watcher.version == 2
    assert server.bodies == [{"source": [origin.url], "version": 2}]


def test_a_server_whose_fetch_failed_is_asked_again(tmp_path):
    write_step(tmp_path / "weights", 1, random_tensors(0))
    with NodeThread(weights_dir=tmp_path / "weights") as origin, FakeServer() as server:
        origin.wait_for_version(1)
        pool = InferencePool(ClientConfig(base_urls=[server.url], retries=0), "tiny")
        watcher = WeightWatcher(tmp_path, pool, sources=WeightSourcesConfig(sources=[origin.url]))

        async def refused_then_accepted() -> list[tuple[bool, int]]:
            async with pool:
                server.refuse = True
                first = await watcher.update(), watcher.version
                server.refuse = False
                return [first, (await watcher.update(), watcher.version)]

        assert asyncio.run(refused_then_accepted()) == [(False, 0), (True, 1)]
    assert len(server.bodies) == 2 and not pool.dead
