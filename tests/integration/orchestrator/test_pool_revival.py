"""Servers joining the pool late: one still starting when the orchestrator does, and one that comes back
while a weight update is under way, which ends up serving that update, whether its catch-up or the
others' update finishes first. Real HTTP servers on 127.0.0.1 that take their time."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from asyncrl.inference.server_process import free_port
from asyncrl.orchestrator.config import ClientConfig
from asyncrl.orchestrator.pool import PROBE_S, AllServersDownError, InferencePool


class SlowServer:
    """Answers /health at once and /update_weights after `delay_s`, recording the versions it loaded."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.versions: list[int] = []

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def update(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(self.delay_s)
        self.versions.append(body["version"])
        return web.json_response({"version": body["version"]})

    async def start(self, port: int | None = None) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_post("/update_weights", self.update)
        runner = web.AppRunner(app)
        await runner.setup()
        port = port or free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, f"http://127.0.0.1:{port}"


async def start_late(ports: list[int], after_s: list[float]) -> tuple[float, set[str], set[str]]:
    """The pool enters while servers on `ports` are still starting; each starts `after_s` later. Returns
    (seconds the pool took to enter, servers dead then, servers dead a few probes after the last start)."""
    runners: list[web.AppRunner] = []

    async def start(port: int, delay: float) -> None:
        await asyncio.sleep(delay)
        runners.append((await SlowServer(0.0).start(port))[0])

    starting = [asyncio.create_task(start(p, d)) for p, d in zip(ports, after_s, strict=True)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        began = time.monotonic()
        async with InferencePool(ClientConfig(base_urls=urls), "tiny") as pool:
            entered, dead_at_entry = time.monotonic() - began, set(pool.dead)
            await asyncio.gather(*starting)
            await asyncio.sleep(3 * PROBE_S)
            return entered, dead_at_entry, set(pool.dead)
    finally:
        for runner in runners:
            await runner.cleanup()


def test_the_pool_waits_for_a_server_still_starting_and_a_later_one_joins_when_it_answers() -> None:
    ports = [free_port(), free_port()]
    entered, dead_at_entry, dead_later = asyncio.run(start_late(ports, [0.5, 2.0]))
    assert 0.5 <= entered < 1.5, "the pool should start work as soon as one server answers"
    assert dead_at_entry == {f"http://127.0.0.1:{ports[1]}"}
    assert dead_later == set(), "the server that came up later never took work"


def test_a_pool_whose_servers_never_answer_stops_after_down_timeout_naming_them() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def enter() -> None:
        async with InferencePool(ClientConfig(base_urls=[url], down_timeout_s=0.5), "tiny"):
            pass

    began = time.monotonic()
    with pytest.raises(AllServersDownError, match=url):
        asyncio.run(enter())
    assert time.monotonic() - began < 3


async def revive_during_an_update(first: SlowServer, revived: SlowServer, update_after_s: float) -> list[int]:
    """`revived` is marked dead while serving v1; v2 goes out `update_after_s` later. The versions it
    loaded, once back."""
    runners, urls = zip(*[await server.start() for server in (first, revived)], strict=True)
    try:
        async with InferencePool(ClientConfig(base_urls=list(urls)), "tiny") as pool:
            pool.weights = {"version": 1}
            pool.mark_dead(pool.clients[1], ConnectionError("killed"))
            await asyncio.sleep(update_after_s)
            await pool.update_weights({"version": 2})
            for _ in range(50):
                if not pool.dead:
                    break
                await asyncio.sleep(0.1)
            assert not pool.dead, "the revived server never took work again"
            return revived.versions
    finally:
        for runner in runners:
            await runner.cleanup()


def test_a_server_whose_catch_up_ends_after_the_update_loads_that_update_too() -> None:
    # The first probe finds the server back and starts giving it v1, which takes a probe period; v2 goes
    # out (to the live server only, at once) in the middle of that.
    assert asyncio.run(revive_during_an_update(SlowServer(0.0), SlowServer(PROBE_S), 1.5 * PROBE_S)) == [1, 2]


def test_a_server_back_while_the_others_load_an_update_is_given_it_before_the_update_returns() -> None:
    # The live server takes 2 probe periods to load v2; the revived one is back with v1 in the middle.
    assert asyncio.run(revive_during_an_update(SlowServer(2 * PROBE_S), SlowServer(0.2), 0.0)) == [1, 2]
