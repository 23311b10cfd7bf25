"""The inference servers behind one front: least-loaded routing, failover, and weight updates."""

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
                self.mark_dead(client, e)
            finally:
                self.inflight[client.base_url] -= 1

    def mark_dead(self, client: ModelClient, reason: Exception) -> None:
        if client.base_url not in self.dead:
            self.dead.add(client.base_url)
            log.error(
                "inference server %s is down (%s); moving its work to the others", client.base_url, reason
            )

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

        results = await asyncio.gather(*(one(c) for c in self.live()))
        refused = [problem for _, _, problem in results if problem is not None]
        if refused:
            raise WeightsRefusedError(refused[0])
        return {url: seconds for url, seconds, _ in results}
