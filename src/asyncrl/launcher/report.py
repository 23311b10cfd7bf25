"""report.png: reward, loss, throughput and off-policy lag of a run, from its metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs have no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from asyncrl.transport.layout import full_disk_reported  # noqa: E402
from asyncrl.transport.metrics import read_metrics  # noqa: E402

PANELS = [  # component, figure, title, whether a moving mean helps read it
    ("orchestrator", "reward_mean", "reward (mean of the batch)", True),
    ("trainer", "loss", "loss", True),
    ("orchestrator", "tokens_per_s", "inference tokens/s", True),
    ("trainer", "tokens_per_s", "trainer tokens/s", True),
    ("orchestrator", "off_policy_max", "off-policy lag (max, steps)", False),
    ("trainer", "wait_s", "trainer wait for data (s)", True),
]


SMOOTH = 10


def _moving_mean(values: list[float], window: int) -> list[float]:
    """Mean of each value and up to window - 1 values before it."""
    return [sum(values[max(0, i - window + 1) : i + 1]) / min(window, i + 1) for i in range(len(values))]


def write_report(run_dir: Path) -> Path | None:
    """Draw the panels that have data; None when nothing has been logged yet."""
    rows = read_metrics(run_dir)
    if not rows:
        return None
    figure, axes = plt.subplots(2, 3, figsize=(13, 7))
    for axis, (component, figure_name, title, smooth) in zip(axes.flat, PANELS, strict=True):
        drawn = [row for row in rows if row["component"] == component and figure_name in row]
        steps = [row["step"] for row in drawn]  # once each, in order: read_metrics drops re-done steps
        values = [row[figure_name] for row in drawn]
        many = smooth and len(steps) > 2 * SMOOTH
        axis.plot(steps, values, marker="" if many else "o", markersize=3, alpha=0.35 if many else 1.0)
        if many:  # per-step figures of a few tasks are noisy; the trend is what people look for
            axis.plot(steps, _moving_mean(values, SMOOTH), color="C0", label=f"mean of {SMOOTH} steps")
            axis.legend(loc="best", fontsize=8)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(run_dir) / "report.png"
    tmp = path.with_name(".report.png.tmp")
    try:
        with full_disk_reported(path):
            figure.savefig(tmp, dpi=90, format="png")
            tmp.replace(path)
    finally:
        plt.close(figure)
        tmp.unlink(missing_ok=True)
    return path
