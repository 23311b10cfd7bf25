"""metrics.jsonl: one JSON object per line, appended by every process, read by the launcher and reports.

A process restarted after a crash redoes the steps its last checkpoint or batch does not hold (the
trainer retrains from its checkpoint, the orchestrator rebuilds the batch it had not written), so its
lines for those steps appear again; the later line of a step replaces the earlier ones, together with
every line of that component after them, which belonged to the run the crash ended.

Every line carries `time` (Unix seconds, when it was written) and `elapsed_s` (seconds since the run
started: the `time` of the file's first line, which `asyncrl rl` writes as it launches).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, BinaryIO

from asyncrl.transport.layout import full_disk_reported, metrics_file

EVENTS = frozenset({"launcher"})
"""Components whose lines record events (a restart) rather than steps: never replaced."""


def append_metrics(run_dir: Path, component: str, step: int, figures: dict[str, Any]) -> None:
    """Append one line {"step", "component", "time", "elapsed_s", ...figures} to metrics.jsonl."""
    path = metrics_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    with full_disk_reported(path), open(path, "ab+") as f:
        started = _first_time(f) or now
        line = json.dumps({"step": step, "component": component, "time": now,
                           "elapsed_s": round(now - started, 3), **figures}) + "\n"  # fmt: skip
        if f.seek(0, 2) and (f.seek(-1, 2), f.read(1))[1] != b"\n":
            line = "\n" + line  # after a line a killed process left unfinished, which readers skip
        f.write(line.encode())


def _first_time(f: BinaryIO) -> float | None:
    """The `time` of the file's first line: when the run started (None in an empty file, or one from
    before lines had a time)."""
    f.seek(0)
    try:
        return json.loads(f.readline()).get("time")
    except json.JSONDecodeError:
        return None


def read_new_lines(run_dir: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The metrics lines after byte `offset` (whole lines only: one still being written waits for the next
    read), and the offset to read on from."""
    path = metrics_file(run_dir)
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    whole = chunk[: chunk.rfind(b"\n") + 1]
    return _parse(whole.splitlines()), offset + len(whole)


def _parse(lines: list[bytes] | list[str]) -> list[dict[str, Any]]:
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a process killed while writing it
            continue
    return rows


def read_metrics(run_dir: Path, component: str | None = None) -> list[dict[str, Any]]:
    """The lines of `component` (default: all), each component's steps as the surviving run made them."""
    path = metrics_file(run_dir)
    if not path.exists():
        return []
    rows = _parse(path.read_text().splitlines())
    survivors: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        kept = survivors.setdefault(row["component"], [])
        while kept and kept[-1]["step"] >= row["step"] and row["component"] not in EVENTS:
            kept.pop()
        kept.append(row)
    alive = {id(r) for kept in survivors.values() for r in kept}
    return [r for r in rows if id(r) in alive and (component is None or r["component"] == component)]
