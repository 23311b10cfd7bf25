"""The manifest of a version: its files laid end to end as one byte stream, the fixed-size shards that
stream is cut into, and a SHA-256 of every file and every shard (and of each shard's delta, if any).

The manifest is the only thing a client trusts before checking: every byte it writes is checked
against it, and the checks below make sure a manifest cannot describe overlapping, missing or
out-of-tree bytes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from asyncrl.broadcast.errors import ManifestError

FORMAT = "asyncrl.shardcast"
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    """Relative POSIX path inside the HF dir."""
    size: int = Field(ge=0)
    offset: int = Field(ge=0)
    """Where the file starts in the version's byte stream."""
    sha256: str = Field(pattern=SHA256.pattern)


class ShardEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(gt=0)
    sha256: str = Field(pattern=SHA256.pattern)
    delta_size: int | None = Field(None, gt=0)
    """Bytes of this shard's delta against the base version (None: no delta; fetch it whole)."""
    delta_sha256: str | None = Field(None, pattern=SHA256.pattern)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["asyncrl.shardcast"] = FORMAT
    format_version: Literal[1] = 1
    version: int = Field(ge=0)
    shard_size: int = Field(gt=0)
    total_size: int = Field(ge=0)
    files: list[FileEntry]
    shards: list[ShardEntry]
    delta_base: int | None = Field(None, ge=0)
    """The version the deltas apply to (None: this version has no deltas)."""
    delta_codec: Literal["sub-planes-zstd", "xor-planes-zstd"] = "sub-planes-zstd"
    """How the deltas were made (asyncrl.broadcast.delta)."""
    delta_stride: Literal[1, 2, 4, 8] = 4
    """Bytes per element of the weights, the width of the byte planes of the deltas."""
    delta_phase: int = Field(0, ge=0, lt=8)
    """Where the weights' first whole element starts in the byte stream, modulo delta_stride."""

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        _check_files(self.files, self.total_size)
        expected = -(-self.total_size // self.shard_size)
        if len(self.shards) != expected:
            raise ValueError(
                f"{len(self.shards)} shards for {self.total_size} bytes in shards of {self.shard_size} "
                f"(expected {expected})"
            )
        for index, shard in enumerate(self.shards):
            if shard.size != self.shard_span(index)[1]:
                raise ValueError(
                    f"shard {index} has {shard.size} bytes, expected {self.shard_span(index)[1]}"
                )
            if (shard.delta_size is None) != (shard.delta_sha256 is None):
                raise ValueError(f"shard {index} has a delta size without a checksum, or the reverse")
            if shard.delta_size is not None and self.delta_base is None:
                raise ValueError(f"shard {index} has a delta but the manifest names no delta_base")
        if self.delta_phase >= self.delta_stride:
            raise ValueError(f"delta_phase {self.delta_phase} is not below delta_stride {self.delta_stride}")
        if self.delta_base is not None and self.delta_base >= self.version:
            raise ValueError(f"delta_base {self.delta_base} is not older than version {self.version}")
        return self

    def shard_span(self, index: int) -> tuple[int, int]:
        """(offset, size) of shard `index` in the byte stream."""
        offset = index * self.shard_size
        return offset, min(self.shard_size, self.total_size - offset)

    def delta_phase_of(self, index: int) -> int:
        """Where the first whole element of shard `index` starts, for its delta."""
        return (self.delta_phase - self.shard_span(index)[0]) % self.delta_stride

    def to_json(self) -> str:
        """Canonical JSON: origin and relays serve the same bytes, so its digest names the version."""
        return self.model_dump_json()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def delta_bytes(self) -> int:
        """Bytes a client holding the base version downloads: deltas where offered, whole shards elsewhere."""
        return sum(s.delta_size if s.delta_size is not None else s.size for s in self.shards)

    @property
    def layout(self) -> list[tuple[str, int]]:
        """(path, size) of every file: two versions with the same layout can be XORed shard by shard."""
        return [(f.path, f.size) for f in self.files]

    @classmethod
    def parse(cls, text: str | bytes, source: str = "manifest") -> Manifest:
        try:
            return cls.model_validate_json(text)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "top level"
            raise ManifestError(
                f"{source} is not a valid shardcast manifest ({where}: {first['msg']}); the node serving it "
                "is corrupt or of another asyncrl version"
            ) from None


def _check_files(files: list[FileEntry], total_size: int) -> None:
    """Files must tile [0, total_size) in order, with safe, distinct relative paths."""
    if not files:
        raise ValueError("a version needs at least one file")
    position = 0
    seen: set[str] = set()
    for entry in files:
        if not is_safe_path(entry.path):
            raise ValueError(f"file path {entry.path!r} is not a plain relative path")
        if entry.path in seen:
            raise ValueError(f"file {entry.path!r} is listed twice")
        seen.add(entry.path)
        if entry.offset != position:
            raise ValueError(f"file {entry.path!r} starts at {entry.offset}, expected {position}")
        position += entry.size
    if position != total_size:
        raise ValueError(f"the files hold {position} bytes but total_size is {total_size}")


def is_safe_path(path: str) -> bool:
    """A normalised relative path that stays inside the dir it is written to."""
    pure = PurePosixPath(path)
    return (
        bool(path)
        and "\\" not in path
        and "\x00" not in path
        and not pure.is_absolute()
        and str(pure) == path
        and bool(pure.parts)
        and all(part not in ("", ".", "..") for part in pure.parts)
    )
