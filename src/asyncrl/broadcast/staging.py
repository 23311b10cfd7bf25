"""A version being fetched, on disk, so that a fetch killed at any moment resumes where it stopped:

```
ROOT/manifest.json   the manifest fetched; a different one (another version, republished) starts afresh
ROOT/files/...       the HF dir, every file allocated at its full size and filled shard by shard
ROOT/deltas/<i>      shard i's delta (relays keep them to serve)
ROOT/done            one line per shard ("shard 3") or delta file ("delta 3") written and checked
```
A line is appended to `done` only after its bytes are written and match their checksum, so whatever it
lists is never fetched again; a shard cut off mid-way is fetched again whole.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from asyncrl.broadcast.errors import ManifestError
from asyncrl.broadcast.files import VersionFiles
from asyncrl.broadcast.manifest import FileEntry, Manifest
from asyncrl.broadcast.store import DELTAS, FILES, MANIFEST

DONE = "done"


class Staging:
    def __init__(self, root: Path, manifest: Manifest, keep_deltas: bool) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.keep_deltas = keep_deltas
        """Also fetch and keep every delta file (a relay, which serves them on)."""
        self.files = VersionFiles(self.root / FILES, manifest.files)
        self.done: set[tuple[str, int]] = set()

    @classmethod
    def open(cls, root: Path, manifest: Manifest, keep_deltas: bool = False) -> Staging:
        """The staging dir of `manifest` at `root`, resumed when it holds the same version's bytes."""
        root = Path(root)
        if not _same_manifest(root / MANIFEST, manifest):
            shutil.rmtree(root, ignore_errors=True)
        (root / DELTAS).mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).write_text(manifest.to_json())
        staging = cls(root, manifest, keep_deltas)
        staging.files.allocate()
        if (root / DONE).exists():
            for line in (root / DONE).read_text().splitlines():
                kind, _, index = line.partition(" ")
                if kind in ("shard", "delta") and index.isdigit():
                    staging.done.add((kind, int(index)))
        return staging

    def is_done(self, kind: str, index: int) -> bool:
        return (kind, index) in self.done

    def mark(self, kind: str, index: int) -> None:
        """Record a shard or delta file as written and checked (its bytes are in the page cache, which
        outlives a killed process)."""
        with open(self.root / DONE, "a") as f:
            f.write(f"{kind} {index}\n")
        self.done.add((kind, index))

    def unmark_shards(self, indices: set[int]) -> None:
        self.done -= {("shard", i) for i in indices}
        lines = "".join(f"{kind} {index}\n" for kind, index in sorted(self.done))
        tmp = self.root / f"{DONE}.tmp"
        tmp.write_text(lines)
        os.replace(tmp, self.root / DONE)

    def delta_path(self, index: int) -> Path:
        return self.root / DELTAS / str(index)

    def write_delta(self, index: int, payload: bytes) -> None:
        tmp = self.root / DELTAS / f"{index}.tmp"
        tmp.write_bytes(payload)
        os.replace(tmp, self.delta_path(index))

    def mismatched_files(self) -> list[FileEntry]:
        """Files whose bytes do not hash to their manifest checksum (reads every byte)."""
        return [f for f in self.manifest.files if self.files.file_sha256(f.path) != f.sha256]

    def shards_of(self, entries: list[FileEntry]) -> set[int]:
        """The shards holding any byte of these files."""
        size = self.manifest.shard_size
        return {i for f in entries for i in range(f.offset // size, -(-(f.offset + f.size) // size))}

    def close(self) -> None:
        self.files.close()

    def finish(self) -> None:
        """Drop the bookkeeping: the dir now holds the version and nothing else."""
        self.close()
        (self.root / DONE).unlink(missing_ok=True)


def _same_manifest(path: Path, manifest: Manifest) -> bool:
    try:
        return Manifest.parse(path.read_bytes()).digest == manifest.digest
    except (OSError, ManifestError):
        return False
