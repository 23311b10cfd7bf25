"""The inference servers behind one front: least-loaded routing, failover, and weight updates."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from asyncrl.config import ClientConfig
from asyncrl.envs.client import ModelClient, ModelUnavailableError
from asyncrl.errors import UserError

log = logging.getLogger("asyncrl.orchestrator")
T = TypeVar("T")


class AllServersDownError(UserError):
    """No inference server is left alive."""


class InferencePool:
    def __init__(self, config: ClientConfig, model: str) -> None:
        self.clients = [ModelClient(u, model, config.timeout_s, config.retries) for u in config.base_urls]
        self.inflight = {c.base_url: 0 for c in self.clients}
        self.dead: set[str] = set()

    async def __aenter__(self) -> InferencePool:
        for client in self.clients:
            await client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            await client.__aexit__()

    def live(self) -> list[ModelClient]:
        return [c for c in self.clients if c.base_url not in self.dead]

    async def run(self, work: Callable[[ModelClient], Awaitable[T]]) -> T:
        """`work` on the least loaded live server; on a dead server, again on another."""
        while True:
            live = self.live()
            if not live:
                raise AllServersDownError(
                    f"every inference server is down ({', '.join(self.inflight)}); check their logs"
                )
            client = min(live, key=lambda c: self.inflight[c.base_url])
            self.inflight[client.base_url] += 1
            try:
                return await work(client)
            except ModelUnavailableError as e:
                if client.base_url not in self.dead:
                    self.dead.add(client.base_url)
                    log.error(
                        "inference server %s is down (%s); moving its work to the others", client.base_url, e
                    )
            finally:
                self.inflight[client.base_url] -= 1

    async def update_weights(self, path: str, version: int) -> dict[str, float]:
        """Load weights `version` on every live server; seconds each took."""

        async def one(client: ModelClient) -> tuple[str, float]:
            start = time.perf_counter()
            try:
                await client.post("/update_weights", {"path": path, "version": version})
            except ModelUnavailableError as e:
                self.dead.add(client.base_url)
                log.error("inference server %s is down (%s)", client.base_url, e)
            return client.base_url, time.perf_counter() - start

        return dict(await asyncio.gather(*(one(c) for c in self.live())))
