"""Inference, trainer and orchestrator as three real processes sharing a run dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asyncrl.transport.batches import load_batch
from asyncrl.transport.layout import rollouts_dir, weights_dir
from asyncrl.transport.metrics import read_metrics

STEPS = 3


def _run_rl(run_dir: Path, server_url: str, *orchestrator_args: str) -> None:
    trainer = subprocess.Popen(
        [sys.executable, "-m", "asyncrl.cli", "trainer", "--output-dir", str(run_dir),
         "--max-steps", str(STEPS), "--trainer.optim.lr", "1e-3", "--trainer.num-threads", "1",
         "--trainer.checkpoint.interval", "0", "--trainer.retention.rollouts", "all"],  # read back below
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    orchestrator = subprocess.run(
        [sys.executable, "-m", "asyncrl.cli", "orchestrator", "--output-dir", str(run_dir),
         "--max-steps", str(STEPS), "--orchestrator.client.base-urls", json.dumps([server_url]),
         "--orchestrator.batch-size", "16", "--orchestrator.group-size", "4",
         "--orchestrator.sampling.max-tokens", "16", *orchestrator_args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert orchestrator.returncode == 0, orchestrator.stderr[-3000:]
    _, trainer_err = trainer.communicate(timeout=600)
    assert trainer.returncode == 0, trainer_err[-3000:]


@pytest.mark.slow
def test_three_processes_train_within_the_staleness_bound(start_server, tiny_dir, tmp_path):
    server = start_server("tiny")
    _run_rl(
        tmp_path, server.url, "--orchestrator.async-level", "1", "--orchestrator.max-off-policy-steps", "2"
    )

    initial = load_file(str(tiny_dir / "model.safetensors"))
    final = load_file(str(weights_dir(tmp_path, STEPS) / "model.safetensors"))
    assert any(not torch.equal(initial[name], final[name]) for name in initial), "training changed nothing"
    orchestrator = read_metrics(tmp_path, "orchestrator")
    assert [m["step"] for m in orchestrator] == [1, 2, 3]
    assert all(1 <= m["off_policy_max"] <= 2 for m in orchestrator)
    assert len(read_metrics(tmp_path, "trainer")) == STEPS
    samples = (tmp_path / "samples" / "step_1.jsonl").read_text().splitlines()
    assert len(samples) == 4 and {"prompt", "completion", "reward", "advantage"} <= set(
        json.loads(samples[0])
    )


@pytest.mark.slow
def test_async_level_0_trains_every_step_on_its_own_policy(start_server, tmp_path):
    server = start_server("tiny")
    _run_rl(
        tmp_path, server.url, "--orchestrator.async-level", "0", "--orchestrator.max-off-policy-steps", "1"
    )
    for step in range(1, STEPS + 1):
        versions = {s.policy_version for s in load_batch(rollouts_dir(tmp_path, step)).samples()}
        assert versions == {step - 1}, f"step {step} trained on samples of policies {versions}"
    assert all(m["off_policy_max"] == 1 for m in read_metrics(tmp_path, "orchestrator"))
