"""The inference servers behind one front: least-loaded routing, failover, revival, and weight updates.

At start the pool waits for a server to answer /health (`asyncrl rl` starts the servers beside the
orchestrator, so they may still be loading); the others join as they come up. A server that stops
answering is marked dead and its work goes to the others (or waits, when none is
left). Dead servers are probed every PROBE_S; one that answers /health again (restarted by `asyncrl rl`'s
supervisor, or by hand) gets the newest weights the others were given before it takes work again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asyncrl.envs.client import ModelClient, ModelRequestError, ModelUnavailableError
from asyncrl.errors import UserError
from asyncrl.orchestrator.config import ClientConfig

log = logging.getLogger("asyncrl.orchestrator")
T = TypeVar("T")
PROBE_S = 1.0
START_POLL_S = 0.1
"""How often, at start, the servers are asked whether they are up yet."""


class AllServersDownError(UserError):
    """No inference server is left alive."""


class WeightsRefusedError(Exception):
    """An inference server answered a weight update with a 4xx; the message is the server's."""


class InferencePool:
    def __init__(self, config: ClientConfig, model: str) -> None:
        self.clients = [
            ModelClient(
                u, model, config.timeout_s, config.retries, api_key=config.api_key, admin_key=config.admin_key
            )
            for u in config.base_urls
        ]
        self.inflight = {c.base_url: 0 for c in self.clients}
        self.dead: set[str] = set()
        """Servers that stopped answering; their work goes to the others."""
        self.down_timeout_s = config.down_timeout_s
        self.weights: dict[str, Any] | None = None
        """The last weight update every live server took: what a revived server is given first."""
        self._revived = asyncio.Event()
        self._prober: asyncio.Task | None = None

    async def __aenter__(self) -> InferencePool:
        for client in self.clients:
            await client.__aenter__()
        try:
            await self._wait_for_first_server()
        except BaseException:
            await self.__aexit__()
            raise
        self._prober = asyncio.create_task(self._probe_dead())
        return self

    async def _wait_for_first_server(self) -> None:
        """Wait until a server answers /health (AllServersDownError after down_timeout_s); those not yet
        answering are left to the prober, which gives them the weights when they come up."""
        deadline = time.monotonic() + self.down_timeout_s
        while True:
            answers = await asyncio.gather(*(c.healthy() for c in self.clients))
            if any(answers):
                break
            if time.monotonic() >= deadline:
                raise AllServersDownError(
                    f"no inference server ({', '.join(self.inflight)}) answered /health within "
                    f"{self.down_timeout_s:.0f}s of the start (orchestrator.client.down_timeout_s); "
                    "check their URLs and logs"
                )
            await asyncio.sleep(START_POLL_S)
        for client, up in zip(self.clients, answers, strict=True):
            if not up:
                self.dead.add(client.base_url)
                log.warning("inference server %s does not answer yet; it takes work once it does",
                            client.base_url)  # fmt: skip

    async def __aexit__(self, *exc: object) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
        for client in self.clients:
            await client.__aexit__()

    def live(self) -> list[ModelClient]:
        return [c for c in self.clients if c.base_url not in self.dead]

    async def engine_counters(self) -> dict[str, float]:
        """The live servers' engine counters (asyncrl_*_total on /metrics), summed by name."""
        totals: dict[str, float] = {}
        for counters in await asyncio.gather(*(c.engine_counters() for c in self.live())):
            for name, value in counters.items():
                totals[name] = totals.get(name, 0.0) + value
        return totals

    async def run(self, work: Callable[[ModelClient], Awaitable[T]]) -> T:
        """`work` on the least loaded live server; on a dead server, again on another."""
        while True:
            live = self.live()
            if not live:
                await self._wait_for_a_server()
                continue
            client = min(live, key=lambda c: self.inflight[c.base_url])
            self.inflight[client.base_url] += 1
            try:
                return await work(client)
            except ModelUnavailableError as e:
                self.mark_dead(client, e)
            finally:
                self.inflight[client.base_url] -= 1

    def mark_dead(self, client: ModelClient, reason: Exception) -> None:
        if client.base_url not in self.dead:
            self.dead.add(client.base_url)
            log.error(
                "inference server %s is down (%s); moving its work to the others", client.base_url, reason
            )

    async def _wait_for_a_server(self) -> None:
        try:
            await asyncio.wait_for(self._revived.wait(), self.down_timeout_s)
        except TimeoutError:
            raise AllServersDownError(
                f"every inference server ({', '.join(self.inflight)}) has been down for "
                f"{self.down_timeout_s:.0f}s (orchestrator.client.down_timeout_s); check their logs"
            ) from None

    async def _probe_dead(self) -> None:
        while True:
            await asyncio.sleep(PROBE_S)
            for client in [c for c in self.clients if c.base_url in self.dead]:
                if await client.healthy() and await self._catch_up(client):
                    self.dead.discard(client.base_url)
                    log.warning("inference server %s is back; it takes work again", client.base_url)
                    self._revived.set()
                    self._revived.clear()

    async def _catch_up(self, client: ModelClient) -> bool:
        """Give a server that came back the weights the others serve; False if it cannot take them yet."""
        sent = None
        while self.weights is not sent:  # a weight update may finish, for the others, while this one loads
            sent = self.weights
            try:
                await client.post("/update_weights", sent, admin=True)
            except (ModelUnavailableError, ModelRequestError) as e:
                log.warning("inference server %s is back but refused weights v%s: %s", client.base_url,
                            sent.get("version"), e)  # fmt: skip
                return False
        return True

    async def update_weights(self, body: dict[str, Any]) -> dict[str, float]:
        """POST /update_weights `body` to every live server, at once; the seconds each took. A server that
        is down is marked dead; one that refuses raises WeightsRefusedError with the server's message once
        every server has answered."""

        async def one(client: ModelClient) -> tuple[str, float, str | None]:
            start = time.perf_counter()
            try:
                await client.post("/update_weights", body, admin=True)
            except ModelUnavailableError as e:
                self.mark_dead(client, e)
            except ModelRequestError as e:
                return client.base_url, time.perf_counter() - start, str(e)
            return client.base_url, time.perf_counter() - start, None

        results: list[tuple[str, float, str | None]] = []
        given: set[str] = set()
        # A server revived while the others load this update took the previous one: it gets this one too.
        while pending := [c for c in self.live() if c.base_url not in given]:
            given.update(c.base_url for c in pending)
            results += await asyncio.gather(*(one(c) for c in pending))
        refused = [problem for _, _, problem in results if problem is not None]
        if refused:
            raise WeightsRefusedError(refused[0])
        self.weights = body
        return {url: seconds for url, seconds, _ in results}
