"""`asyncrl broadcast fetch`: one version from origins and relays into an HF dir, written atomically.

The dir is assembled beside its final place (`.NAME.partial/`, which a crashed fetch resumes), checked
file by file, then renamed into place with the manifest as `.shardcast.json`: the dir either holds the
exact version or does not exist. A later fetch may name it as `base` to receive deltas against it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from asyncrl.broadcast.config import FetchConfig, token_or_env
from asyncrl.broadcast.download import fetch_into
from asyncrl.broadcast.errors import ManifestError, OutputExistsError
from asyncrl.broadcast.files import VersionFiles
from asyncrl.broadcast.manifest import Manifest
from asyncrl.broadcast.sources import SourcePool
from asyncrl.broadcast.staging import Staging
from asyncrl.broadcast.store import FILES

log = logging.getLogger("asyncrl.broadcast")
LOCAL_MANIFEST = ".shardcast.json"
"""The manifest of the version an HF dir holds, written into the dir by the fetch that made it."""


@dataclass
class FetchReport:
    version: int
    path: str
    total_bytes: int
    """Size of the version's files."""
    wire_bytes: int
    """Bytes received, retries included."""
    seconds: float
    started_at: float
    """Unix time the fetch started (after start-up), for aggregating concurrent fetches."""
    finished_at: float
    full_shards: int = 0
    delta_shards: int = 0
    reused_shards: int = 0
    corrupt: int = 0
    """Shards or deltas a source sent corrupt (each then fetched from elsewhere)."""
    retries: int = 0
    delta_base: int | None = None
    """The local version deltas were applied to (None: full shards only)."""
    by_source: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        rate = self.wire_bytes / self.seconds / 2**20 if self.seconds > 0 else 0.0
        line = (
            f"fetched version {self.version} into {self.path}: {self.total_bytes / 2**20:.1f} MiB, "
            f"{self.wire_bytes / 2**20:.1f} MiB over the wire in {self.seconds:.2f}s ({rate:.1f} MiB/s); "
            f"shards: {self.full_shards} full, {self.delta_shards} from deltas"
        )
        if self.delta_base is not None:
            line += f" against v{self.delta_base} (ratio {self.wire_bytes / max(1, self.total_bytes):.3f})"
        if self.reused_shards:
            line += f", {self.reused_shards} kept from an interrupted fetch"
        if self.corrupt or self.retries:
            line += f"; {self.corrupt} corrupt and {self.retries} retried, all fetched again elsewhere"
        return line


def fetch_version(
    sources: list[str],
    version: int | str,
    out: Path,
    config: FetchConfig | None = None,
    base: Path | None = None,
    progress: bool = False,
) -> FetchReport:
    """Fetch `version` (a number or "latest") into the HF dir `out`; see fetch_version_async."""
    return asyncio.run(fetch_version_async(sources, version, out, config or FetchConfig(), base, progress))


async def fetch_version_async(
    sources: list[str],
    version: int | str,
    out: Path,
    config: FetchConfig,
    base: Path | None = None,
    progress: bool = False,
) -> FetchReport:
    """Fetch `version` into `out`, taking deltas against `base` (a dir an earlier fetch wrote) where
    offered. Raises a BroadcastError whose message says what to do; `out` is then left untouched."""
    out = Path(out)
    async with SourcePool(sources, token_or_env(config.token), config.timeout_s) as pool:
        number = await pool.latest(config.wait_s) if version == "latest" else int(version)
        manifest = await pool.manifest(number, config.wait_s)
        started, clock = time.time(), time.perf_counter()
        report = FetchReport(number, str(out), manifest.total_size, 0, 0.0, started, started)
        if _holds(out, manifest):
            report.reused_shards = len(manifest.shards)
            return report
        staging = Staging.open(out.parent / f".{out.name}.partial", manifest)
        base_files = local_version(base, manifest.delta_base) if base is not None else None
        try:
            stats = await fetch_into(staging, pool, base_files, config, progress)
        finally:
            staging.close()
    (staging.root / FILES / LOCAL_MANIFEST).write_text(manifest.to_json())
    (staging.root / FILES).rename(out)
    shutil.rmtree(staging.root, ignore_errors=True)
    report.seconds = time.perf_counter() - clock
    report.finished_at = time.time()
    report.wire_bytes = stats.wire_bytes
    report.by_source = dict(stats.by_source)
    report.full_shards, report.delta_shards = stats.full_shards, stats.delta_shards
    report.reused_shards, report.corrupt, report.retries = stats.reused_shards, stats.corrupt, stats.retries
    report.delta_base = manifest.delta_base if stats.delta_shards else None
    return report


def local_version(directory: Path, version: int | None) -> VersionFiles | None:
    """The files of `directory` when an earlier fetch wrote version `version` there (with every file at its
    size); None otherwise. Their bytes are not re-read here: every shard rebuilt on them is checked."""
    manifest = read_local_manifest(directory)
    if manifest is None or version is None or manifest.version != version:
        return None
    files = VersionFiles(directory, manifest.files)
    for entry in manifest.files:
        path = directory / entry.path
        if not path.is_file() or path.stat().st_size != entry.size:
            return None
    return files


def read_local_manifest(directory: Path) -> Manifest | None:
    try:
        return Manifest.parse((Path(directory) / LOCAL_MANIFEST).read_bytes())
    except (OSError, ManifestError):
        return None


def _holds(out: Path, manifest: Manifest) -> bool:
    """True when `out` already holds this very version; raises when it holds anything else."""
    if not out.exists():
        return False
    existing = read_local_manifest(out)
    if existing is not None and existing.digest == manifest.digest:
        return True
    raise OutputExistsError(
        f"{out} exists and does not hold version {manifest.version}; remove it or choose another --out"
    )
