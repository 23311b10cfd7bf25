"""metrics.jsonl: one JSON object per line, appended by every process, read by the launcher and reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asyncrl.transport.layout import metrics_file


def append_metrics(run_dir: Path, component: str, step: int, figures: dict[str, Any]) -> None:
    """Append one line {"step", "component", ...figures} to metrics.jsonl."""
    path = metrics_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"step": step, "component": component, **figures}) + "\n"
    with open(path, "a") as f:
        f.write(line)


def read_metrics(run_dir: Path, component: str | None = None) -> list[dict[str, Any]]:
    path = metrics_file(run_dir)
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if component is None or r["component"] == component]
