"""Where an inference server keeps the weights it fetches for `/update_weights {"source": [URLs]}`: one
step_N/ per version under its own dir, the newest kept as the base of the next version's deltas."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from asyncrl.broadcast.client import FetchReport, fetch_version, read_local_manifest
from asyncrl.broadcast.config import InferenceBroadcastConfig
from asyncrl.transport.layout import step_path, steps

log = logging.getLogger("asyncrl.broadcast")


class WeightsInbox:
    def __init__(self, config: InferenceBroadcastConfig) -> None:
        self.config = config
        self._dir = Path(config.dir) if config.dir is not None else None

    @property
    def dir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="asyncrl-weights-"))
        return self._dir

    def fetch(self, sources: list[str], version: int) -> tuple[Path, FetchReport]:
        """Fetch `version` into dir/step_<version>/ (checked, written atomically); blocking."""
        out = step_path(self.dir, version)
        report = fetch_version(sources, version, out, self.config, base=self._newest_below(version))
        self._prune(keep=out)
        return out, report

    def _fetched(self) -> list[tuple[int, Path]]:
        return steps(self.dir, lambda path: read_local_manifest(path) is not None)

    def _newest_below(self, version: int) -> Path | None:
        older = [path for number, path in self._fetched() if number < version]
        return older[-1] if older else None

    def _prune(self, keep: Path) -> None:
        for _, path in self._fetched()[: -self.config.keep]:
            if path != keep:
                shutil.rmtree(path, ignore_errors=True)
