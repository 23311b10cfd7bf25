"""A relay: mirrors each new version of its upstreams (origins or other relays) and serves it on, so
nodes form a tree whose root, the origin, sends each version only to its few children."""

from __future__ import annotations

import asyncio
import logging
import time

from asyncrl.broadcast.config import FetchConfig, token_or_env
from asyncrl.broadcast.download import fetch_into
from asyncrl.broadcast.errors import BroadcastError
from asyncrl.broadcast.sources import SourcePool
from asyncrl.broadcast.staging import Staging
from asyncrl.broadcast.store import VersionStore

log = logging.getLogger("asyncrl.broadcast")
LONG_POLL_S = 20.0


class Relay:
    role = "relay"

    def __init__(self, store: VersionStore, upstreams: list[str], config: FetchConfig) -> None:
        self.store, self.upstreams, self.config = store, upstreams, config

    async def run(self) -> None:
        """Long-poll the upstreams; mirror the newest version as soon as one has it."""
        async with SourcePool(self.upstreams, token_or_env(self.config.token), self.config.timeout_s) as pool:
            while True:
                current = self.store.latest()
                try:
                    newer = await pool.wait_for_newer(-1 if current is None else current, LONG_POLL_S)
                    if newer is None:
                        await asyncio.sleep(0.5)  # every upstream down, or nothing new: ask again
                        continue
                    await self.mirror(pool, newer)
                except BroadcastError as e:
                    log.error("cannot mirror from %s (%s); retrying", pool.urls, e)
                    await asyncio.sleep(2.0)

    async def mirror(self, pool: SourcePool, version: int) -> None:
        """Fetch version `version` (deltas against the version here, where offered), check every shard and
        file, then serve it."""
        start = time.perf_counter()
        manifest = await pool.manifest(version, self.config.wait_s)
        staging = Staging.open(self.store.staging_dir(version), manifest, keep_deltas=True)
        base = manifest.delta_base
        base_files = self.store.files(base) if base is not None and base in self.store.versions() else None
        try:
            stats = await fetch_into(staging, pool, base_files, self.config)
        finally:
            staging.close()
        staging.finish()
        self.store.commit(version, staging.root, manifest)
        log.info(
            "mirrored version %d: %.1f MiB received for %.1f MiB (%d shards from deltas) in %.1fs",
            version, stats.wire_bytes / 2**20, manifest.total_size / 2**20, stats.delta_shards,
            time.perf_counter() - start,
        )  # fmt: skip
