"""Watching the trainer's published weights and loading each new version on every inference server.

Servers that share the run dir load `weights/step_N/` from it. Servers on other nodes get weights through
shardcast (`orchestrator.weights.sources`): the watcher asks those sources which versions they have, and
asks the servers to fetch the newest from them (`/update_weights {"source": [URLs], "version": N}`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx

from asyncrl.broadcast.config import WeightSourcesConfig, token_or_env
from asyncrl.envs.client import ModelRequestError, ModelUnavailableError
from asyncrl.orchestrator.pool import InferencePool
from asyncrl.run_dir import HEARTBEAT_S, WaitTimeout, latest_weights

log = logging.getLogger("asyncrl.orchestrator")
POLL_S = 0.2


class WeightWatcher:
    """Tracks the policy version the servers serve; `update` loads anything newer that is STABLE (or, with
    broadcast sources, that the sources have)."""

    def __init__(
        self, run_dir: Path, pool: InferencePool, version: int = 0, sources: WeightSourcesConfig | None = None
    ) -> None:
        self.run_dir = run_dir
        self.pool = pool
        self.version = version
        self.sources = sources if sources is not None and sources.sources else None
        self.last_update_s = 0.0
        """How long the slowest server took to load the latest weights."""
        self._http: httpx.AsyncClient | None = None
        self._last_complaint = 0.0

    async def update(self) -> bool:
        if self.sources is not None:
            return await self._update_from_sources(self.sources)
        found = latest_weights(self.run_dir)
        if found is None or found[0] <= self.version:
            return False
        step, path = found
        seconds = await self.pool.update_weights(str(path), step)
        self._loaded(step, seconds)
        return True

    def _loaded(self, step: int, seconds: dict[str, float]) -> None:
        self.last_update_s = max(seconds.values(), default=0.0)
        log.info("servers now serve weights v%d (%s)", step, ", ".join(f"{s:.2f}s" for s in seconds.values()))
        self.version = step

    async def _update_from_sources(self, sources: WeightSourcesConfig) -> bool:
        newest = await self._newest_on_sources(sources)
        if newest is None or newest <= self.version:
            return False
        body = {"source": sources.sources, "version": newest}
        seconds = await self._post_everywhere(body)
        if seconds is None:
            return False  # asked again on the next poll
        self._loaded(newest, seconds)
        return True

    async def _newest_on_sources(self, sources: WeightSourcesConfig) -> int | None:
        """The newest version any source has; None when none has one or none answers."""
        if self._http is None:
            token = token_or_env(sources.token)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            self._http = httpx.AsyncClient(headers=headers, timeout=10.0)

        async def ask(url: str) -> int | None:
            try:
                response = await self._http.get(f"{url.rstrip('/')}/versions")
                response.raise_for_status()
                return response.json()["latest"]
            except (httpx.HTTPError, ValueError, KeyError) as e:
                self._complain(f"broadcast source {url} does not answer ({e})")
                return None

        answers = await asyncio.gather(*(ask(url) for url in sources.sources))
        return max((a for a in answers if a is not None), default=None)

    async def _post_everywhere(self, body: dict[str, Any]) -> dict[str, float] | None:
        """POST /update_weights to every live server; the seconds each took, or None if one refused (its
        fetch failed: the version is asked for again on the next poll)."""

        async def one(client: Any) -> tuple[str, float, str | None]:
            start = time.perf_counter()
            try:
                await client.post("/update_weights", body)
            except ModelUnavailableError as e:
                self.pool.dead.add(client.base_url)
                log.error("inference server %s is down (%s)", client.base_url, e)
            except ModelRequestError as e:
                return client.base_url, time.perf_counter() - start, str(e)
            return client.base_url, time.perf_counter() - start, None

        results = await asyncio.gather(*(one(c) for c in self.pool.live()))
        refused = [problem for _, _, problem in results if problem is not None]
        if refused:
            self._complain(f"weights v{body['version']} not loaded everywhere: {refused[0]}; retrying")
            return None
        return {url: seconds for url, seconds, _ in results}

    def _complain(self, message: str) -> None:
        """Log a problem that repeats every poll at most once per heartbeat."""
        now = time.monotonic()
        if now - self._last_complaint > HEARTBEAT_S:
            log.warning(message)
            self._last_complaint = now

    async def keep_fresh(self) -> None:
        """Load each new version as soon as it is STABLE; the only caller of `update`, run as a task, so
        one version is never loaded twice by concurrent callers."""
        try:
            while True:
                await self.update()
                await asyncio.sleep(POLL_S)
        finally:
            if self._http is not None:
                await self._http.aclose()

    async def wait_for(self, version: int, timeout_s: float, waiting: str) -> float:
        """Block until the servers serve at least `version` (loaded by `keep_fresh`); seconds waited.
        Logs a heartbeat."""
        start = last_beat = time.monotonic()
        while self.version < version:
            now = time.monotonic()
            if now - start > timeout_s:
                raise WaitTimeout(
                    f"waited {timeout_s:.0f}s for weights v{version} ({waiting}); is the trainer up?"
                )
            if now - last_beat > HEARTBEAT_S:
                log.info(
                    "%s: waiting for weights v%d from the trainer (%.0fs)", waiting, version, now - start
                )
                last_beat = now
            await asyncio.sleep(POLL_S)
        return time.monotonic() - start
