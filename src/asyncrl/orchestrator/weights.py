"""Watching the trainer's published weights and loading each new version on every inference server."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from asyncrl.orchestrator.pool import InferencePool
from asyncrl.run_dir import HEARTBEAT_S, WaitTimeout, latest_weights

log = logging.getLogger("asyncrl.orchestrator")
POLL_S = 0.2


class WeightWatcher:
    """Tracks the policy version the servers serve; `update` loads anything newer that is STABLE."""

    def __init__(self, run_dir: Path, pool: InferencePool, version: int = 0) -> None:
        self.run_dir = run_dir
        self.pool = pool
        self.version = version
        self.last_update_s = 0.0
        """How long the slowest server took to load the latest weights."""

    async def update(self) -> bool:
        found = latest_weights(self.run_dir)
        if found is None or found[0] <= self.version:
            return False
        step, path = found
        seconds = await self.pool.update_weights(str(path), step)
        self.last_update_s = max(seconds.values(), default=0.0)
        log.info("servers now serve weights v%d (%s)", step, ", ".join(f"{s:.2f}s" for s in seconds.values()))
        self.version = step
        return True

    async def keep_fresh(self) -> None:
        """Load each new version as soon as it is STABLE; the only caller of `update`, run as a task, so
        one version is never loaded twice by concurrent callers."""
        while True:
            await self.update()
            await asyncio.sleep(POLL_S)

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
