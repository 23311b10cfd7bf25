"""Turning a trainer's `weights/step_N/` into version N of the origin's store: its files (hard-linked, not
copied, where the filesystem allows), the manifest with a checksum per shard and per file, and the
deltas against the previous version, all computed in one pass over the bytes."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

from asyncrl.broadcast import delta
from asyncrl.broadcast.errors import PublishError
from asyncrl.broadcast.files import Span, VersionFiles
from asyncrl.broadcast.manifest import FileEntry, Manifest, ShardEntry
from asyncrl.broadcast.store import DELTAS, FILES, VersionStore
from asyncrl.transport.layout import STABLE

log = logging.getLogger("asyncrl.broadcast")


def publish_version(
    source: Path, version: int, store: VersionStore, shard_size: int, with_delta: bool, level: int = 1
) -> tuple[Path, Manifest]:
    """Write version `version` from the HF dir `source` into the store's staging dir; returns the staging
    dir and the manifest, for `store.commit` (run this in a thread: it reads every byte)."""
    start = time.perf_counter()
    staging = store.staging_dir(version)
    shutil.rmtree(staging, ignore_errors=True)
    (staging / DELTAS).mkdir(parents=True)
    placed = _link_files(Path(source), staging / FILES)
    total = sum(p.size for p in placed)
    files = VersionFiles(staging / FILES, placed)
    base = _delta_base(store, placed) if with_delta else None
    deltas = _Deltas(files, store.files(base), shard_size, total, level) if base is not None else None

    file_hashes = {p.path: hashlib.sha256() for p in placed}
    shards = []
    for index, offset in enumerate(range(0, total, shard_size)):
        size = min(shard_size, total - offset)
        data = files.read(offset, size)
        position = 0
        for entry, _, length in files.pieces(offset, size):
            file_hashes[entry.path].update(memoryview(data)[position : position + length])
            position += length
        shard = ShardEntry(size=size, sha256=hashlib.sha256(data).hexdigest())
        payload = deltas.encode(data, offset) if deltas is not None else None
        if payload is not None and len(payload) < size:
            (staging / DELTAS / str(index)).write_bytes(payload)
            shard = shard.model_copy(
                update={"delta_size": len(payload), "delta_sha256": hashlib.sha256(payload).hexdigest()}
            )
        shards.append(shard)
    has_deltas = any(s.delta_size is not None for s in shards)
    manifest = Manifest(
        version=version,
        shard_size=shard_size,
        total_size=total,
        files=[FileEntry(**p._asdict(), sha256=file_hashes[p.path].hexdigest()) for p in placed],
        shards=shards,
        **(deltas.manifest_fields(base) if deltas is not None and has_deltas else {}),
    )
    delta_note = (
        f"; {manifest.delta_codec} deltas against v{manifest.delta_base}: {manifest.delta_bytes / 2**20:.1f} "
        f"MiB ({manifest.delta_bytes / max(1, total):.3f} of full)"
        if manifest.delta_base is not None
        else ""
    )
    log.info(
        "published version %d: %.1f MiB in %d shards%s (%.1fs)",
        version, total / 2**20, len(shards), delta_note, time.perf_counter() - start,
    )  # fmt: skip
    return staging, manifest


class _Deltas:
    """The deltas of one version against its base: element width and alignment read from the weights,
    the codec that compresses a few sample shards best."""

    def __init__(
        self, files: VersionFiles, base: VersionFiles, shard_size: int, total: int, level: int
    ) -> None:
        self.base, self.shard_size, self.level = base, shard_size, level
        self.stride, self.phase = delta.element_layout(files)
        offsets = list(range(0, total, shard_size))
        sizes = [(o, min(shard_size, total - o)) for o in offsets[len(offsets) // 2 :][:2]]
        samples = [(files.read(o, n), base.read(o, n)) for o, n in sizes]
        self.codec = delta.best_codec(samples, self.stride, self.phase, level) if samples else delta.CODECS[0]

    def encode(self, data: bytes, offset: int) -> bytes:
        shard_phase = (self.phase - offset) % self.stride
        base = self.base.read(offset, len(data))
        return delta.encode(data, base, self.stride, shard_phase, self.codec, self.level)

    def manifest_fields(self, base_version: int) -> dict:
        return {
            "delta_base": base_version,
            "delta_codec": self.codec,
            "delta_stride": self.stride,
            "delta_phase": self.phase,
        }


def _link_files(source: Path, target: Path) -> list[Span]:
    """Every regular file of `source` but STABLE, linked (or copied) under `target`, in path order."""
    if not source.is_dir():
        raise PublishError(f"weights dir {source} does not exist")
    paths = sorted(p for p in source.rglob("*") if p.is_file() and p.relative_to(source) != Path(STABLE))
    placed, offset = [], 0
    for path in paths:
        relative = path.relative_to(source).as_posix()
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A link keeps this version's bytes even if the trainer later deletes or replaces its dir.
            os.link(path, destination)
        except OSError:
            try:
                shutil.copy2(path, destination)
            except OSError as e:
                raise PublishError(f"cannot read {path} to publish it: {e}") from None
        size = destination.stat().st_size
        placed.append(Span(relative, size, offset))
        offset += size
    if not placed:
        raise PublishError(f"weights dir {source} holds no files")
    return placed


def _delta_base(store: VersionStore, placed: list[Span]) -> int | None:
    """The newest stored version with the same files of the same sizes: shard i of both is the same
    tensors, so their XOR is mostly zeros."""
    latest = store.latest()
    if latest is None or store.manifest(latest).layout != [(p.path, p.size) for p in placed]:
        return None
    return latest
