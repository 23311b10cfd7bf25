"""A run watched as users watch one: W&B (offline) and TensorBoard tracking it, and `asyncrl view` on it
in a real headless browser."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys

import pytest

from asyncrl.inference.server_process import free_port
from asyncrl.transport.layout import samples_file
from asyncrl.transport.metrics import read_metrics
from tests import wandb_records
from tests.viewer_process import rendered_page

pytest.importorskip("wandb")
pytest.importorskip("tensorboard")

STEPS = 4


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("watched") / "run"
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "--output-dir", str(run), "--max-steps", str(STEPS),
               "--inference.port", str(free_port()), "--orchestrator.batch-size", "8",
               "--orchestrator.group-size", "4", "--orchestrator.sampling.max-tokens", "12",
               "--monitor.wandb", "true", "--monitor.tensorboard", "true",
               "--monitor.samples-every", "2"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return run


@pytest.mark.slow
def test_a_run_with_wandb_offline_leaves_one_wandb_run_with_its_metrics_steps_times_and_samples(watched_run):
    (offline,) = wandb_records.offline_runs(watched_run)
    rows = wandb_records.history(offline)
    trainer = [r for r in rows if "trainer/loss" in r]
    assert [r["trainer/step"] for r in trainer] == list(range(1, STEPS + 1))
    assert all(r["trainer/time"] > 1.7e9 and r["trainer/elapsed_s"] > 0 for r in trainer)
    orchestrator = [r for r in rows if "orchestrator/reward_mean" in r]
    assert [r["orchestrator/step"] for r in orchestrator] == list(range(1, STEPS + 1))
    assert wandb_records.config(offline)["max_steps"] == STEPS
    # The default job's held-out eval (every 20 steps, and after the last) rides along as component "eval".
    evals = [r for r in rows if "eval/held-out/avg@1" in r]
    assert [r["eval/step"] for r in evals] == [0, STEPS] and all(
        0 <= r["eval/held-out/avg@1"] <= 1 for r in evals
    )
    samples = wandb_records.table_rows(offline, "samples")
    assert sorted({row[0] for row in samples}) == [2, 4]
    first = json.loads(samples_file(watched_run, 2).read_text().splitlines()[0])
    assert samples[0][2] == "assistant: " + first["completion"][0]["content"]


@pytest.mark.slow
def test_the_same_run_is_in_tensorboard_event_files(watched_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(watched_run / "tensorboard"))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("trainer/loss")]
    expected = [(m["step"], m["loss"]) for m in read_metrics(watched_run, "trainer")]
    assert losses == [(step, pytest.approx(loss)) for step, loss in expected]
    assert [e.step for e in events.Tensors("samples/text_summary")] == [2, 4]


@pytest.mark.slow
def test_asyncrl_view_on_the_run_renders_its_curves_and_rollouts_in_a_real_browser(watched_run, tmp_path):
    dom = rendered_page(str(watched_run), str(tmp_path / "profile"))
    # The DOM after the page's scripts ran: one curve per series, with every step's point.
    curves = dict(re.findall(r'data-series="([^"]+)" data-points="(\d+)"', dom))
    for series in ("orchestrator/reward_mean", "trainer/loss", "orchestrator/off_policy_max"):
        assert curves.get(series) == str(STEPS), (series, curves)
    assert curves.get("eval/held-out/avg@1") == "2", curves
    assert 'id="run-state" class="state finished"' in dom
    newest = json.loads(samples_file(watched_run, STEPS).read_text().splitlines()[0])
    text = html.unescape(dom)
    assert newest["prompt"][-1]["content"] in text and newest["completion"][0]["content"] in text
