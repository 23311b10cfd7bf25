"""report.png: reward (and each eval's avg@k), loss, throughput and off-policy lag of a run, from its
metrics.jsonl; MoE runs get a row of routing figures."""

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

MOE_PANELS = [  # a fourth row, for MoE runs: how far trainer and inference compute apart, and why
    ("trainer", "mismatch_kl", "mismatch KL (inference vs trainer)", True),
    ("trainer", "moe/routing_mismatch_frac", "routing differs from inference (share)", True),
    ("trainer", "moe/expert_load_cv", "expert load CV (mean over MoE layers)", True),
]

BREAKDOWNS = [  # component, title, the per-step seconds stacked in its panel
    ("trainer", "trainer time per step (s)",
     ("wait_s", "read_s", "pack_s", "forward_backward_s", "optimizer_s", "publish_s", "checkpoint_s")),
    ("orchestrator", "inference time per step (s, all servers)",
     ("inference_prefill_s", "inference_decode_s", "inference_idle_s")),
    ("orchestrator", "orchestrator time per step (s)",
     ("scoring_s", "packing_s", "write_s", "weights_wait_s")),
]  # fmt: skip

SMOOTH = 10
EVALS_ON = "reward_mean"
"""The panel the evals' curves share: their avg@k is a reward too, held-out beside trained."""


def _moving_mean(values: list[float], window: int) -> list[float]:
    """Mean of each value and up to window - 1 values before it."""
    return [sum(values[max(0, i - window + 1) : i + 1]) / min(window, i + 1) for i in range(len(values))]


def write_report(run_dir: Path) -> Path | None:
    """Draw the panels that have data; None when nothing has been logged yet."""
    rows = read_metrics(run_dir)
    if not rows:
        return None
    moe = any("moe/expert_load_cv" in row for row in rows)
    figure, axes = plt.subplots(4 if moe else 3, 3, figsize=(13, 13.3 if moe else 10))
    for axis, (component, title, parts) in zip(axes[2], BREAKDOWNS, strict=True):
        _stack(axis, [row for row in rows if row["component"] == component], title, parts)
    panels = list(zip(axes[:2].flat, PANELS, strict=True))
    if moe:
        panels += zip(axes[3], MOE_PANELS, strict=True)
    for axis, panel in panels:
        _draw_panel(axis, rows, *panel)
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


def _draw_panel(
    axis: plt.Axes, rows: list[dict], component: str, name: str, title: str, smooth: bool
) -> None:
    drawn = [row for row in rows if row["component"] == component and name in row]
    steps = [row["step"] for row in drawn]  # once each, in order: read_metrics drops re-done steps
    values = [row[name] for row in drawn]
    many = smooth and len(steps) > 2 * SMOOTH
    axis.plot(steps, values, marker="" if many else "o", markersize=3, alpha=0.35 if many else 1.0)
    if many:  # per-step figures of a few tasks are noisy; the trend is what people look for
        axis.plot(steps, _moving_mean(values, SMOOTH), color="C0", label=f"mean of {SMOOTH} steps")
    if name == EVALS_ON:
        _draw_evals(axis, rows)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="best", fontsize=8)
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)


def eval_curves(rows: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """Each eval's avg@k (`<name>/avg@<k>` of the "eval" lines) as its steps and values."""
    evals = [row for row in rows if row["component"] == "eval"]
    names = sorted({name for row in evals for name in row if "/avg@" in name})
    return {
        name: ([r["step"] for r in evals if name in r], [r[name] for r in evals if name in r])
        for name in names
    }


def _draw_evals(axis: plt.Axes, rows: list[dict]) -> None:
    for color, (name, (steps, averages)) in enumerate(eval_curves(rows).items(), start=1):
        axis.plot(steps, averages, color=f"C{color}", marker="s", markersize=4, label=f"eval {name}")


def _stack(axis: plt.Axes, rows: list[dict], title: str, parts: tuple[str, ...]) -> None:
    """Each step's seconds, part on part (a moving mean of each): where a step's time goes."""
    drawn = [part for part in parts if any(part in row for row in rows)]
    steps = [row["step"] for row in rows]
    if drawn and steps:
        window = SMOOTH if len(steps) > 2 * SMOOTH else 1
        layers = [_moving_mean([row.get(part, 0.0) for row in rows], window) for part in drawn]
        axis.stackplot(
            steps,
            layers,
            labels=[part.removeprefix("inference_").removesuffix("_s") for part in drawn],
            alpha=0.8,
        )
        axis.legend(loc="upper left", fontsize=7, ncol=2)
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
