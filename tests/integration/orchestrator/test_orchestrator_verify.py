"""The orchestrator checks rollouts' TOPLOC proofs: honest servers pass, a server serving other weights
under the claimed name is caught; the rollouts files it writes verify with `asyncrl toploc verify`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess
from asyncrl.models import build_tiny_model
from asyncrl.transport.metrics import read_metrics

STEPS = 2
VERIFY = ["--orchestrator.verify.fraction", "1.0", "--orchestrator.verify.rollouts-file", "true"]


def _orchestrator(run_dir: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "asyncrl.cli", "orchestrator", "--output-dir", str(run_dir),
            "--max-steps", str(STEPS), "--orchestrator.client.base-urls", json.dumps([url]),
            "--orchestrator.batch-size", "8", "--orchestrator.group-size", "4",
            "--orchestrator.async-level", "0", "--orchestrator.max-off-policy-steps", "1",
            "--orchestrator.sampling.max-tokens", "40", *VERIFY, *extra]  # fmt: skip


@pytest.mark.slow
def test_honest_rollouts_pass_and_their_rollouts_file_verifies(start_server, tiny_dir, tmp_path):
    server = start_server("tiny")
    trainer = subprocess.Popen(
        [sys.executable, "-m", "asyncrl.cli", "trainer", "--output-dir", str(tmp_path),
         "--max-steps", str(STEPS), "--trainer.num-threads", "1", "--trainer.checkpoint.interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    orchestrator = subprocess.run(
        _orchestrator(tmp_path, server.url), capture_output=True, text=True, timeout=600
    )
    assert orchestrator.returncode == 0, orchestrator.stderr[-3000:]
    assert trainer.wait(timeout=600) == 0

    metrics = read_metrics(tmp_path, "orchestrator")
    # async_level 0: no weight update lands mid-generation, so every turn is checkable.
    assert [m["verify_checked"] for m in metrics] == [8] * STEPS
    assert all(m["verify_failed"] == m["verify_skipped"] == m["verify_dropped_groups"] == 0 for m in metrics)

    lines = (tmp_path / "toploc" / "step_2.jsonl").read_text().splitlines()
    assert len(lines) == 8 and {json.loads(line)["policy_version"] for line in lines} == {1}
    verify = _verify(tmp_path / "weights" / "step_1", tmp_path / "toploc" / "step_2.jsonl")
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
    # The same file claimed for the initial weights fails.
    assert _verify(tiny_dir, tmp_path / "toploc" / "step_2.jsonl").returncode == 1


def _verify(model: Path, rollouts: Path) -> subprocess.CompletedProcess:
    command = ["toploc", "verify", "--model", str(model), "--rollouts", str(rollouts)]
    return subprocess.run(
        [sys.executable, "-m", "asyncrl.cli", *command], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_a_server_serving_other_weights_under_the_claimed_name_is_caught(tmp_path):
    other = build_tiny_model(tmp_path / "other", seed=1)
    inference = InferenceConfig(port=0, num_threads=1, served_model_name="tiny")
    with InferenceServerProcess(
        ModelConfig(path=str(other)), inference, 0, tmp_path / "server.log"
    ) as server:
        orchestrator = subprocess.run(
            _orchestrator(tmp_path / "run", server.url), capture_output=True, text=True, timeout=600
        )
    assert orchestrator.returncode != 0
    assert "failed TOPLOC verification" in orchestrator.stderr
    assert not (tmp_path / "run" / "rollouts" / "step_1").exists(), "a forged batch reached the trainer"
