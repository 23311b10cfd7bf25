"""Watching the trainer's published weights and loading each new version on every inference server.

Where versions come from is a weight source: the run dir (`weights/step_N/` with STABLE, for servers that
share it) or shardcast (`orchestrator.weights.sources`, for servers on other nodes: the sources say which
versions they have, and the servers fetch the newest from them). Both go through one update with one retry
policy: a version a server refuses is retried with backoff, each refusal logged with the server's message,
and after `weights_update_attempts` refusals the run stops with that message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx

from asyncrl.broadcast.config import WeightSourcesConfig, token_or_env
from asyncrl.errors import UserError
from asyncrl.orchestrator.pool import InferencePool, WeightsRefusedError
from asyncrl.transport.layout import HEARTBEAT_S, WaitTimeout, latest_weights
from asyncrl.transport.status import StatusFile

log = logging.getLogger("asyncrl.orchestrator")
POLL_S = 0.2
"""How often a remote source is asked for a new version (and the longest a waiter sleeps unwoken)."""
RUN_DIR_POLL_S = 0.02
"""How often the run dir is looked at: a listing costs microseconds, and every step waits for it."""
T = TypeVar("T")


class WeightUpdateError(UserError):
    """The inference servers kept refusing a weights version; the message is the server's."""


class WeightSource(Protocol):
    poll_s: float
    """Seconds between two looks for a new version."""

    async def newest(self) -> int | None:
        """The newest version this source has, or None when it has none (or does not answer)."""

    def update_body(self, version: int) -> dict[str, Any]:
        """The `/update_weights` body that makes a server load `version`, the one the last newest() named."""

    async def close(self) -> None: ...


class RunDirWeights:
    """Versions the trainer published into the run dir the servers share."""

    poll_s = RUN_DIR_POLL_S

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._newest: tuple[int, Path] | None = None

    async def newest(self) -> int | None:
        self._newest = latest_weights(self.run_dir)
        return self._newest[0] if self._newest else None

    def update_body(self, version: int) -> dict[str, Any]:
        assert self._newest is not None and self._newest[0] == version, "newest() names the version"
        return {"path": str(self._newest[1]), "version": version}

    async def close(self) -> None:
        pass


class BroadcastWeights:
    """Versions shardcast sources have; servers fetch them from there."""

    poll_s = POLL_S

    def __init__(self, config: WeightSourcesConfig, complain: Callable[[str], None]) -> None:
        self.config = config
        self.complain = complain
        token = token_or_env(config.token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=10.0)

    async def newest(self) -> int | None:
        async def ask(url: str) -> int | None:
            try:
                response = await self._http.get(f"{url.rstrip('/')}/versions")
                response.raise_for_status()
                return response.json()["latest"]
            except (httpx.HTTPError, ValueError, KeyError) as e:
                self.complain(f"broadcast source {url} does not answer ({e})")
                return None

        answers = await asyncio.gather(*(ask(url) for url in self.config.sources))
        return max((a for a in answers if a is not None), default=None)

    def update_body(self, version: int) -> dict[str, Any]:
        return {"source": self.config.sources, "version": version}

    async def close(self) -> None:
        await self._http.aclose()


class WeightWatcher:
    """Tracks the policy version the servers serve; `update` loads anything newer its source has. As an
    async context manager it keeps them fresh in a task of its own (`keep_fresh`)."""

    def __init__(
        self,
        run_dir: Path,
        pool: InferencePool,
        version: int = 0,
        sources: WeightSourcesConfig | None = None,
        attempts: int = 5,
        backoff_s: float = 1.0,
        status: StatusFile | None = None,
    ) -> None:
        self.pool = pool
        self.version = version
        self.attempts, self.backoff_s = attempts, backoff_s
        self._last_complaint = 0.0
        self.source: WeightSource = (
            BroadcastWeights(sources, self._complain) if sources is not None and sources.sources
            else RunDirWeights(run_dir)
        )  # fmt: skip
        self.last_update_s = 0.0
        """How long the slowest server took to load the latest weights."""
        self._refusals = 0
        self._task: asyncio.Task | None = None
        self.status = status
        """Where waiting for weights is recorded for the launcher (none: nowhere)."""
        self._loaded = asyncio.Event()
        """Set (and replaced) whenever a new version serves: wakes `wait_for` at once."""

    async def update(self) -> bool:
        """Load the source's newest version on every live server if it is newer; whether it loaded. A
        refusal waits out the backoff and returns False (the next call tries again); the last allowed
        refusal raises WeightUpdateError."""
        newest = await self.source.newest()
        if newest is None or newest <= self.version:
            return False
        body = self.source.update_body(newest)
        try:
            seconds = await self.pool.update_weights(body)
        except WeightsRefusedError as e:
            self._refusals += 1
            problem = f"weights v{body['version']} were refused: {e}"
            if self._refusals >= self.attempts:
                raise WeightUpdateError(f"{problem} (tried {self.attempts} times; stopping)") from None
            delay = self.backoff_s * 2 ** (self._refusals - 1)
            log.warning("%s; trying again in %.0fs (%d of %d)", problem, delay, self._refusals, self.attempts)
            await asyncio.sleep(delay)
            return False
        self._refusals = 0
        self.last_update_s = max(seconds.values(), default=0.0)
        log.info("servers now serve weights v%d (%s)", body["version"],
                 ", ".join(f"{s:.2f}s" for s in seconds.values()))  # fmt: skip
        self.version = body["version"]
        self._loaded.set()
        self._loaded = asyncio.Event()
        return True

    def _complain(self, message: str) -> None:
        """Log a problem that repeats every poll at most once per heartbeat."""
        now = time.monotonic()
        if now - self._last_complaint > HEARTBEAT_S:
            log.warning(message)
            self._last_complaint = now

    async def keep_fresh(self) -> None:
        """Load each new version as soon as the source has it; the only caller of `update`, run as a task,
        so one version is never loaded twice by concurrent callers."""
        try:
            while True:
                await self.update()
                await asyncio.sleep(self.source.poll_s)
        finally:
            await self.source.close()

    async def __aenter__(self) -> WeightWatcher:
        self._task = asyncio.create_task(self.keep_fresh())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def guard(self, work: Awaitable[T]) -> T:
        """`work`'s result; if keeping the weights fresh fails first, `work` is cancelled and that failure
        raised, so a run whose weights cannot load stops at once rather than at its next wait."""
        assert self._task is not None, "use `async with WeightWatcher(...)`"
        job = asyncio.ensure_future(work)
        await asyncio.wait([job, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            self._task.result()  # raises what stopped it
            raise RuntimeError("the weight watcher stopped without an error")
        return job.result()

    async def wait_for(self, version: int, timeout_s: float, waiting: str) -> float:
        """Block until the servers serve at least `version` (loaded by `keep_fresh`); seconds waited.
        Logs a heartbeat."""
        start = last_beat = time.monotonic()
        if self.status is not None and self.version < version:
            self.status.waiting(f"weights v{version} from the trainer ({waiting})")
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._loaded.wait(), POLL_S)
        if self.status is not None:
            self.status.working()
        return time.monotonic() - start
