"""What a run dir gained since last time: new metrics.jsonl lines and new samples/step_<N>.jsonl files.

Where the follower got to is saved in `<run dir>/monitor/position.json` after each read that found
something, so a resumed run logs on from there rather than again from the start.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncrl.transport.layout import (
    monitor_dir,
    samples_dir,
    step_number,
    write_file_atomically,
)
from asyncrl.transport.metrics import read_new_lines

log = logging.getLogger("asyncrl.monitor")


@dataclass
class News:
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """New metrics lines, in file order."""
    samples: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)
    """New sample files as (step, records), oldest first."""


class RunFollower:
    """Reads a run dir's new metrics lines and sample files, each once."""

    def __init__(self, run_dir: Path, samples_every: int) -> None:
        self.run_dir, self.samples_every = Path(run_dir), samples_every
        self._position = monitor_dir(run_dir) / "position.json"
        saved = json.loads(self._position.read_text()) if self._position.exists() else {}
        self.offset: int = saved.get("metrics_offset", 0)
        """Bytes of metrics.jsonl read so far (whole lines only)."""
        self.samples_step: int = saved.get("samples_step", 0)
        """The newest step whose samples were read."""

    def poll(self) -> News:
        news = News(self._new_metrics(), self._new_samples())
        if news.metrics or news.samples:
            position = {"metrics_offset": self.offset, "samples_step": self.samples_step}
            write_file_atomically(self._position, json.dumps(position))
        return news

    def _new_metrics(self) -> list[dict[str, Any]]:
        rows, self.offset = read_new_lines(self.run_dir, self.offset)
        return rows

    def _new_samples(self) -> list[tuple[int, list[dict[str, Any]]]]:
        found = []
        for path in samples_dir(self.run_dir).glob("step_*.jsonl"):
            step = step_number(path, ".jsonl")
            if step is not None and step > self.samples_step and step % self.samples_every == 0:
                found.append((step, path))
        news = []
        for step, path in sorted(found):
            try:
                records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            except (OSError, json.JSONDecodeError) as e:  # deleted, or not written by the orchestrator
                log.warning("skipping the samples of step %d (%s): %s", step, path, e)
                continue
            news.append((step, records))
            self.samples_step = step
        return news
