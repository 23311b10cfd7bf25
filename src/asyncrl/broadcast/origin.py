"""The origin: publishes each new `weights/step_N/` of a run (once STABLE) as version N."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from asyncrl.broadcast.errors import BroadcastError
from asyncrl.broadcast.publish import publish_version
from asyncrl.broadcast.store import VersionStore
from asyncrl.transport.layout import latest_stable

log = logging.getLogger("asyncrl.broadcast")


class Origin:
    role = "origin"

    def __init__(
        self,
        store: VersionStore,
        weights_dir: Path,
        shard_size: int,
        delta: bool,
        zstd_level: int,
        poll_s: float,
    ) -> None:
        self.store, self.weights_dir = store, Path(weights_dir)
        self.shard_size, self.delta, self.zstd_level, self.poll_s = shard_size, delta, zstd_level, poll_s

    async def run(self) -> None:
        """Publish the newest STABLE step whenever it is newer than the newest version; steps the trainer
        published meanwhile are skipped, as no client wants an older policy than the newest."""
        if not self.weights_dir.is_dir():  # started before the run: say so, or it looks stuck
            log.warning("%s does not exist yet: waiting for the trainer to publish into it", self.weights_dir)
        while True:
            found, latest = latest_stable(self.weights_dir), self.store.latest()
            if found is not None and (latest is None or found[0] > latest):
                step, path = found
                try:
                    staging, manifest = await asyncio.to_thread(
                        publish_version, path, step, self.store, self.shard_size, self.delta, self.zstd_level
                    )
                except (BroadcastError, OSError) as e:
                    log.error("cannot publish %s (%s); retrying", path, e)
                    await asyncio.sleep(1.0)
                    continue
                self.store.commit(step, staging, manifest)
            await asyncio.sleep(self.poll_s)
