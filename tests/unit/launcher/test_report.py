"""report.png: the evals' curves beside the training reward."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from asyncrl.launcher.report import eval_curves, write_report
from asyncrl.transport.metrics import append_metrics, read_metrics


def _run(run_dir, steps: int = 40, interval: int = 10) -> None:
    rng = random.Random(0)
    for step in range(steps + 1):
        if step:
            append_metrics(
                run_dir, "orchestrator", step, {"reward_mean": 0.5 + step / 100 + rng.random() / 10}
            )
            append_metrics(run_dir, "trainer", step, {"loss": 1 / step, "wait_s": 0.1})
        if step % interval == 0:
            append_metrics(run_dir, "eval", step, {"held-out/avg@1": 0.4 + step / 100, "held-out/pass@1": 0.1,
                                                   "policy_version": step})  # fmt: skip


def test_each_evals_avg_at_k_is_a_curve_against_its_steps(tmp_path):
    _run(tmp_path)
    curves = eval_curves(read_metrics(tmp_path))
    assert list(curves) == ["held-out/avg@1"]
    steps, averages = curves["held-out/avg@1"]
    assert steps == [0, 10, 20, 30, 40] and averages == pytest.approx([0.4, 0.5, 0.6, 0.7, 0.8])


def test_the_report_draws_a_run_with_evals(tmp_path):
    _run(tmp_path)
    path = write_report(tmp_path)
    assert path is not None and Image.open(path).size[0] > 1000


def test_an_moe_run_gets_a_fourth_row_of_routing_figures(tmp_path):
    _run(tmp_path)
    dense_height = Image.open(write_report(tmp_path)).size[1]
    for step in range(1, 41):
        figures = {"mismatch_kl": 1e-3, "moe/routing_mismatch_frac": 0.01, "moe/expert_load_cv": 0.9}
        append_metrics(tmp_path, "trainer", step, figures)
    assert Image.open(write_report(tmp_path)).size[1] > 1.25 * dense_height
