"""Over a long run the run dir stays bounded: the trainer keeps the newest weights and the batches a resume
would still train, and a resume from its newest checkpoint still works."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from asyncrl.models import load_model
from asyncrl.transport.batches import write_batch
from asyncrl.transport.layout import (
    checkpoints_root,
    metrics_file,
    rollouts_dir,
    rollouts_root,
    steps,
    weights_root,
)
from asyncrl.transport.metrics import read_metrics
from tests.batches import make_samples

STEPS = 44


def _trainer(run_dir, max_steps, *extra):
    command = [sys.executable, "-m", "asyncrl.cli", "trainer", "--output-dir", str(run_dir),
               "--max-steps", str(max_steps), "--trainer.num-threads", "1", "--trainer.row-tokens", "64",
               "--trainer.checkpoint.interval", "10", "--trainer.retention.weights", "3", *extra]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _numbers(parent):
    return [step for step, _ in steps(parent)]


@pytest.mark.slow
def test_a_44_step_run_keeps_a_bounded_run_dir_and_still_resumes(tmp_path):
    model = load_model("tiny")
    source = tmp_path / "batches"
    for step in range(1, STEPS + 5):
        write_batch(source, step, make_samples(4, seed=step, model=model))
    run = tmp_path / "run"
    for step in range(1, STEPS + 1):
        shutil.copytree(rollouts_dir(source, step), rollouts_dir(run, step))

    result = _trainer(run, STEPS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _numbers(weights_root(run)) == [42, 43, 44], "only the newest 3 weight versions are kept"
    assert _numbers(rollouts_root(run)) == [41, 42, 43, 44], "batches up to the step-40 checkpoint are gone"
    assert _numbers(checkpoints_root(run)) == [30, 40]

    for step in range(STEPS + 1, STEPS + 5):
        shutil.copytree(rollouts_dir(source, step), rollouts_dir(run, step))
    resumed = _trainer(run, STEPS + 4, "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = [json.loads(line) for line in metrics_file(run).read_text().splitlines()]
    assert [m["step"] for m in lines][STEPS:] == list(range(41, STEPS + 5)), "resumed from step 40"
    # Read back, the retrained steps' lines replace the ones of the run that stopped after step 44.
    assert [m["step"] for m in read_metrics(run, "trainer")] == list(range(1, STEPS + 5))
    assert _numbers(weights_root(run)) == [46, 47, 48]
    # The newest checkpoint is still step 40's: a resume would train 41-48 again, so those batches stay.
    assert _numbers(rollouts_root(run)) == list(range(41, STEPS + 5))
