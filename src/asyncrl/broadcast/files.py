"""A version's files as one byte stream: shards are ranges of it, and a range may span several files."""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol


class Placed(Protocol):
    """A file's place in the stream (a manifest's FileEntry is one)."""

    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def offset(self) -> int: ...


class Span(NamedTuple):
    """A file placed in the stream before its checksum is known."""

    path: str
    size: int
    offset: int


class VersionFiles:
    """The files of one version under `root`, laid end to end in manifest order."""

    def __init__(self, root: Path, files: Sequence[Placed]) -> None:
        self.root = Path(root)
        self.entries = list(files)
        self._stored = [f for f in self.entries if f.size > 0]  # empty files hold no byte of the stream
        self._starts = [f.offset for f in self._stored]
        self._write_fds: dict[str, int] = {}

    def pieces(self, offset: int, size: int) -> Iterator[tuple[Placed, int, int]]:
        """(file, offset in that file, length) of every piece of the range [offset, offset + size)."""
        end = offset + size
        index = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while offset < end and index < len(self._stored):
            entry = self._stored[index]
            stop = entry.offset + entry.size
            if offset < stop:
                length = min(end, stop) - offset
                yield entry, offset - entry.offset, length
                offset += length
            index += 1
        if offset < end:
            raise ValueError(f"range ends at {end}, past the stream's end")

    def chunks(self, offset: int, size: int, chunk: int) -> Iterator[bytes]:
        """The range [offset, offset + size) in chunks of at most `chunk` bytes. A file shorter than its
        entry raises, so a truncated file is never served as if whole."""
        for entry, start, length in self.pieces(offset, size):
            with open(self.root / entry.path, "rb") as f:
                f.seek(start)
                while length:
                    data = f.read(min(chunk, length))
                    if not data:
                        raise OSError(f"{self.root / entry.path} is shorter than its manifest entry")
                    length -= len(data)
                    yield data

    def read(self, offset: int, size: int) -> bytes:
        return b"".join(self.chunks(offset, size, 1 << 24))

    # -- writing, for fetches: files are allocated at their final size and filled at any offset ----------

    def allocate(self) -> None:
        """Create every file (empty ones too) at its full size, keeping bytes already there (a resume)."""
        for entry in self.entries:
            path = self.root / entry.path
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab"):
                pass
            if path.stat().st_size != entry.size:
                os.truncate(path, entry.size)
            # Opened here, once, so writers in several threads never race to open the same file.
            if entry.size and entry.path not in self._write_fds:
                self._write_fds[entry.path] = os.open(path, os.O_WRONLY)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Write `data` at `offset` of the stream (after `allocate`); safe from several threads."""
        view = memoryview(data)
        for entry, start, length in self.pieces(offset, len(view)):
            fd = self._write_fds[entry.path]
            written = 0
            while written < length:
                written += os.pwrite(fd, view[:length][written:], start + written)
            view = view[length:]

    def close(self) -> None:
        for fd in self._write_fds.values():
            os.close(fd)
        self._write_fds.clear()

    def file_sha256(self, path: str) -> str:
        with open(self.root / path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
