"""Fetching a version's shards into a staging dir: `connections` downloads at once over the sources,
every shard checked against the manifest before it counts as done.

- A shard that fails (connection lost, source gone, short or corrupt bytes) is queued again and taken
  from another source when there is one; the bytes of a cut-off transfer are kept and the next source
  is asked only for the rest (a range request). A corrupt shard is fetched again whole.
- Where the manifest offers a delta and the base version is here, the delta is fetched instead and the
  shard rebuilt from it; a rebuilt shard that does not match its checksum is fetched whole.
- Once every shard is done, every file is checked too; a mismatch is fetched again once, and a second
  one means the manifest itself is wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import httpx
from tqdm import tqdm

from asyncrl.broadcast import delta
from asyncrl.broadcast.config import FetchConfig
from asyncrl.broadcast.errors import DeltaError, ManifestError, ShardFetchError
from asyncrl.broadcast.files import VersionFiles
from asyncrl.broadcast.manifest import Manifest
from asyncrl.broadcast.sources import Source, SourcePool
from asyncrl.broadcast.staging import Staging

log = logging.getLogger("asyncrl.broadcast")
BUSY_S = 0.25


class _SourceFailed(Exception):
    """This source could not deliver this shard now (unreachable, missing it, cut off, short)."""


class _Corrupt(_SourceFailed):
    """This source sent bytes that do not match the manifest."""


class _Busy(Exception):
    """The source serves as many transfers as it allows; try again shortly."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"busy, retry in {retry_after_s:.1f}s")
        self.retry_after_s = retry_after_s


@dataclass
class Job:
    index: int
    kind: Literal["shard", "delta"]
    attempts: int = 0
    corrupt: int = 0
    busy_s: float = 0.0
    avoid: set[str] = field(default_factory=set)
    """Sources that failed this job; others are preferred."""
    problems: list[str] = field(default_factory=list)


@dataclass
class _Partial:
    """The first `received` bytes of a shard, already written; a retry asks only for the rest."""

    received: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)


@dataclass
class DownloadStats:
    wire_bytes: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    full_shards: int = 0
    delta_shards: int = 0
    reused_shards: int = 0
    """Shards a previous, interrupted run of this fetch had already written and checked."""
    corrupt: int = 0
    retries: int = 0


class ShardDownloader:
    def __init__(
        self,
        pool: SourcePool,
        staging: Staging,
        base: VersionFiles | None,
        config: FetchConfig,
        bar: tqdm | None = None,
    ) -> None:
        self.pool, self.staging, self.config, self.bar = pool, staging, config, bar
        self.manifest: Manifest = staging.manifest
        self.base = base if config.delta and self.manifest.delta_base is not None else None
        """The delta base version's files, when here and deltas are wanted."""
        self.stats = DownloadStats()
        self._partials: dict[int, _Partial] = {}
        self._queue: asyncio.Queue[Job] = asyncio.Queue()

    def plan(self, indices: set[int] | None = None) -> list[Job]:
        """The jobs that fetch what the staging dir still lacks (of `indices`, default all shards)."""
        jobs: list[Job] = []
        for index, shard in enumerate(self.manifest.shards):
            if indices is not None and index not in indices:
                continue
            need_shard = not self.staging.is_done("shard", index)
            has_delta = shard.delta_size is not None
            need_delta_file = (
                self.staging.keep_deltas and has_delta and not self.staging.is_done("delta", index)
            )
            if need_shard and has_delta and self.base is not None:
                jobs.append(Job(index, "delta"))
                continue
            if need_shard:
                jobs.append(Job(index, "shard"))
            if need_delta_file:
                jobs.append(Job(index, "delta"))
        return jobs

    def wire_size(self, jobs: list[Job]) -> int:
        shards = self.manifest.shards
        return sum(
            shards[j.index].delta_size or 0 if j.kind == "delta" else shards[j.index].size for j in jobs
        )

    async def run(self, jobs: list[Job]) -> None:
        """Run `jobs` to completion, or raise the first error no retry can fix."""
        if not jobs:
            return
        for job in jobs:
            self._queue.put_nowait(job)
        workers = [
            asyncio.ensure_future(self._worker()) for _ in range(min(self.config.connections, len(jobs)))
        ]
        joined = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait([joined, *workers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (joined, *workers):
                task.cancel()
            results = await asyncio.gather(joined, *workers, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._attempt(job)
            finally:
                self._queue.task_done()

    async def _attempt(self, job: Job) -> None:
        source = await self.pool.pick(job.avoid)
        started = time.monotonic()
        try:
            received = await (
                self._fetch_shard(job, source) if job.kind == "shard" else self._fetch_delta(job, source)
            )
        except _Busy as e:
            self.pool.busy(source, e.retry_after_s)
            job.busy_s += e.retry_after_s
            if job.busy_s < self.config.timeout_s:
                self._queue.put_nowait(job)
                return
            job.busy_s = 0.0
            self._failed(job, source, f"busy for over {self.config.timeout_s:.0f}s")
        except (_SourceFailed, httpx.HTTPError) as e:
            problem = str(e) or type(e).__name__
            if isinstance(e, _Corrupt):
                self.stats.corrupt += 1
                job.corrupt += 1
                log.warning(
                    "%s sent a corrupt %s %d (%s); fetching it elsewhere", source.url, job.kind, job.index, e
                )
            self._failed(job, source, problem)
        except BaseException:
            self.pool.failed(source)
            raise
        else:
            self.pool.succeeded(source, received, time.monotonic() - started)

    def _failed(self, job: Job, source: Source, problem: str) -> None:
        self.pool.failed(source)
        job.attempts += 1
        job.avoid.add(source.url)
        job.problems.append(f"{source.url}: {problem}")
        if job.attempts >= self.config.attempts:
            hint = (
                "every source sent bytes that do not match the manifest: the manifest does not match its "
                "shards; republish the version at the origin"
                if job.corrupt == job.attempts
                else "check that the sources are up and reachable"
            )
            raise ShardFetchError(
                f"{job.kind} {job.index} of version {self.manifest.version} failed {job.attempts} times "
                f"({'; '.join(job.problems[-4:])}); {hint}"
            )
        log.info("%s %d from %s failed (%s); retrying", job.kind, job.index, source.url, problem)
        self.stats.retries += 1
        self._queue.put_nowait(job)

    def _received(self, source: Source, size: int) -> None:
        self.stats.wire_bytes += size
        self.stats.by_source[source.url] += size
        if self.bar is not None:
            if self.bar.total is not None and self.bar.n + size > self.bar.total:
                self.bar.total = self.bar.n + size  # a retried transfer crosses the wire twice
            self.bar.update(size)

    async def _fetch_shard(self, job: Job, source: Source) -> int:
        """Fetch shard `job.index` whole into the staging files, resuming a cut-off transfer."""
        index, version = job.index, self.manifest.version
        offset, size = self.manifest.shard_span(index)
        partial = self._partials.setdefault(index, _Partial())
        headers = {"Range": f"bytes={partial.received}-"} if partial.received else {}
        received = 0
        async with self.pool.stream(source, f"/v/{version}/shards/{index}", headers) as response:
            _check_status(response)
            if partial.received and not response.headers.get("content-range", "").startswith(
                f"bytes {partial.received}-"
            ):
                partial = self._partials[index] = _Partial()  # the source sent it all: start over
            async for data in response.aiter_raw():
                if partial.received + len(data) > size:
                    self._partials.pop(index, None)
                    raise _Corrupt(f"more than the shard's {size} bytes")
                self.staging.files.write(offset + partial.received, data)
                partial.hasher.update(data)
                partial.received += len(data)
                received += len(data)
                self._received(source, len(data))
        if partial.received < size:
            raise _SourceFailed(f"the transfer ended after {partial.received} of {size} bytes")
        del self._partials[index]
        if partial.hasher.hexdigest() != self.manifest.shards[index].sha256:
            raise _Corrupt("the bytes do not match the shard's checksum")
        self.staging.mark("shard", index)
        self.stats.full_shards += 1
        return received

    async def _fetch_delta(self, job: Job, source: Source) -> int:
        """Fetch shard `job.index`'s delta; keep it (relays) and rebuild the shard from it (when the base
        is here and the shard is still missing)."""
        index, version = job.index, self.manifest.version
        shard = self.manifest.shards[index]
        assert shard.delta_size is not None and shard.delta_sha256 is not None
        payload = bytearray()
        async with self.pool.stream(source, f"/v/{version}/deltas/{index}", {}) as response:
            _check_status(response)
            async for data in response.aiter_raw():
                if len(payload) + len(data) > shard.delta_size:
                    raise _Corrupt(f"more than the delta's {shard.delta_size} bytes")
                payload += data
                self._received(source, len(data))
        if len(payload) < shard.delta_size:
            raise _SourceFailed(f"the transfer ended after {len(payload)} of {shard.delta_size} bytes")
        if hashlib.sha256(payload).hexdigest() != shard.delta_sha256:
            raise _Corrupt("the bytes do not match the delta's checksum")
        if self.staging.keep_deltas and not self.staging.is_done("delta", index):
            self.staging.write_delta(index, bytes(payload))
            self.staging.mark("delta", index)
        if self.base is not None and not self.staging.is_done("shard", index):
            if await asyncio.to_thread(self._rebuild, index, bytes(payload)):
                self.staging.mark("shard", index)
                self.stats.delta_shards += 1
            else:
                log.warning("shard %d rebuilt from its delta does not match: the base here differs", index)
                self._queue.put_nowait(Job(index, "shard"))
        return len(payload)

    def _rebuild(self, index: int, payload: bytes) -> bool:
        """Shard `index` from its delta and the base; written only when it matches the shard's checksum."""
        assert self.base is not None
        offset, size = self.manifest.shard_span(index)
        try:
            manifest = self.manifest
            base = self.base.read(offset, size)
            rebuilt = delta.decode(
                payload, base, manifest.delta_stride, manifest.delta_phase_of(index), manifest.delta_codec
            )
        except (DeltaError, OSError, ValueError) as e:
            log.warning("shard %d: cannot rebuild from its delta (%s)", index, e)
            return False
        if hashlib.sha256(rebuilt).hexdigest() != self.manifest.shards[index].sha256:
            return False
        self.staging.files.write(offset, rebuilt)
        return True


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    if status == 503:
        # Retry-After counts whole seconds; a shard slot frees much sooner, so ask again within BUSY_S.
        hint = response.headers.get("retry-after", "")
        raise _Busy(min(BUSY_S, float(hint)) if hint.replace(".", "", 1).isdigit() else BUSY_S)
    if status == 404:
        raise _SourceFailed("the source does not have it")
    raise _SourceFailed(f"HTTP {status}")


async def fetch_into(
    staging: Staging, pool: SourcePool, base: VersionFiles | None, config: FetchConfig, progress: bool = False
) -> DownloadStats:
    """Fill `staging` with every shard of its manifest, then check every file; the stats of the fetch."""
    downloader = ShardDownloader(pool, staging, base, config)
    jobs = downloader.plan()
    downloader.stats.reused_shards = sum(
        staging.is_done("shard", i) for i in range(len(staging.manifest.shards))
    )
    version = staging.manifest.version
    with tqdm(
        total=downloader.wire_size(jobs), unit="B", unit_scale=True, unit_divisor=1024, desc=f"v{version}",
        disable=not progress, leave=False,
    ) as bar:  # fmt: skip
        downloader.bar = bar
        await downloader.run(jobs)
        bad = await asyncio.to_thread(staging.mismatched_files)
        if bad:
            # Every shard matched, so the bytes on disk are not what was received (a crash before the page
            # cache reached the disk): fetch those files' shards once more.
            log.warning("%s do not match their checksums; fetching their shards again", [f.path for f in bad])
            shards = staging.shards_of(bad)
            staging.unmark_shards(shards)
            await downloader.run([Job(i, "shard") for i in sorted(shards)])
            bad = await asyncio.to_thread(staging.mismatched_files)
    if bad:
        raise ManifestError(
            f"{', '.join(f.path for f in bad)} of version {version} do not match the manifest's checksums "
            "although every shard does: the manifest is inconsistent; republish the version at the origin"
        )
    return downloader.stats
