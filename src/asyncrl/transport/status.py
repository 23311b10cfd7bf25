"""status/<component>.json: what a process is waiting for, so the launcher can say why a run stalls without
reading logs. Each process rewrites its own file (atomically) when it starts and stops waiting."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from asyncrl.transport.layout import status_dir, status_file, write_file_atomically


class StatusFile:
    def __init__(self, run_dir: Path, component: str) -> None:
        self.path = status_file(run_dir, component)
        self.component = component

    def waiting(self, what: str) -> None:
        """From now on this process waits for `what` (e.g. "the step 5 batch")."""
        self._write({"component": self.component, "waiting_for": what, "since": time.time()})

    def working(self) -> None:
        self._write({"component": self.component, "waiting_for": None, "since": time.time()})

    def _write(self, record: dict[str, Any]) -> None:
        write_file_atomically(self.path, json.dumps(record) + "\n")


def read_statuses(run_dir: Path) -> list[dict[str, Any]]:
    """Every process's last status record (unreadable ones skipped: a process may be rewriting it)."""
    records = []
    for path in sorted(status_dir(run_dir).glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records


def stall_reason(run_dir: Path, now: float | None = None) -> str:
    """What the process that has waited longest waits for, e.g. "trainer: waiting for the step 5 batch
    (42s)"; "starting up" when nothing waits yet."""
    now = time.time() if now is None else now
    waiting = [r for r in read_statuses(run_dir) if r.get("waiting_for")]
    if not waiting:
        return "starting up"
    oldest = min(waiting, key=lambda r: r["since"])
    return f"{oldest['component']}: waiting for {oldest['waiting_for']} ({now - oldest['since']:.0f}s)"
