"""The versions a node (origin or relay) serves, on disk:

```
DATA_DIR/v_<N>/manifest.json     the manifest, written last
DATA_DIR/v_<N>/files/...         the version's HF dir
DATA_DIR/v_<N>/deltas/<i>        shard i's delta against the base version, where the manifest has one
DATA_DIR/.v_<N>.partial/         a version being published or mirrored (same layout, plus `done`)
```
A version is visible only once its dir is renamed into place, and the oldest are deleted past `keep`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from asyncrl.broadcast.errors import ManifestError, VersionNotFoundError
from asyncrl.broadcast.files import VersionFiles
from asyncrl.broadcast.manifest import Manifest

log = logging.getLogger("asyncrl.broadcast")
MANIFEST = "manifest.json"
FILES = "files"
DELTAS = "deltas"


class VersionStore:
    def __init__(self, root: Path, keep: int) -> None:
        self.root = Path(root)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)
        self._manifests: dict[int, Manifest] = {}
        self._changed = asyncio.Event()
        self._closed = False
        for path in self.root.glob("v_*"):
            number = path.name.removeprefix("v_")
            if number.isdigit() and (path / MANIFEST).is_file():
                try:
                    self._manifests[int(number)] = Manifest.parse((path / MANIFEST).read_bytes(), str(path))
                except ManifestError as e:
                    log.warning("ignoring %s: %s", path, e)
        self._prune()

    def versions(self) -> list[int]:
        return sorted(self._manifests)

    def latest(self) -> int | None:
        return max(self._manifests, default=None)

    def manifest(self, version: int) -> Manifest:
        try:
            return self._manifests[version]
        except KeyError:
            raise VersionNotFoundError(
                f"version {version} is not on this node (it has {self.versions() or 'none yet'})"
            ) from None

    def version_dir(self, version: int) -> Path:
        return self.root / f"v_{version}"

    def staging_dir(self, version: int) -> Path:
        return self.root / f".v_{version}.partial"

    def files(self, version: int) -> VersionFiles:
        return VersionFiles(self.version_dir(version) / FILES, self.manifest(version).files)

    def delta_path(self, version: int, index: int) -> Path:
        return self.version_dir(version) / DELTAS / str(index)

    def commit(self, version: int, staging: Path, manifest: Manifest) -> None:
        """Make a fully written staging dir version `version`; call from the event loop serving it."""
        (staging / MANIFEST).write_text(manifest.to_json())
        final = self.version_dir(version)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        self._manifests[version] = manifest
        self._prune()
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_newer(self, after: int, timeout_s: float) -> None:
        """Return once a version newer than `after` is here, or after `timeout_s`, or at `close`."""
        if (self.latest() or -1) > after or timeout_s <= 0 or self._closed:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            pass

    def close(self) -> None:
        """End every wait for a new version now (the node is shutting down)."""
        self._closed = True
        self._changed.set()

    def _prune(self) -> None:
        for version in self.versions()[: -self.keep]:
            del self._manifests[version]
            # A transfer still reading it fails mid-way; its client moves to a newer version or source.
            shutil.rmtree(self.version_dir(version), ignore_errors=True)
            log.info("deleted version %d (keeping the last %d)", version, self.keep)
        oldest = min(self._manifests, default=None)
        for stale in self.root.glob(".v_*.partial"):
            number = stale.name.removeprefix(".v_").removesuffix(".partial")
            if oldest is not None and number.isdigit() and int(number) < oldest:
                shutil.rmtree(stale, ignore_errors=True)
