"""Evals during training, with inference, trainer and orchestrator as real processes sharing a run dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asyncrl.transport.metrics import read_metrics

STEPS = 4
EVAL = """
[[orchestrator.eval]]
name = "held-out"
env.args = { split = "test", num_examples = 100 }
interval = 2
num_examples = 4
k = 2

[orchestrator.eval.sampling]
max_tokens = 8
"""


def _run(run_dir: Path, server_url: str) -> subprocess.CompletedProcess:
    config = run_dir / "evals.toml"
    config.write_text(EVAL)
    trainer = subprocess.Popen(
        [sys.executable, "-m", "asyncrl.cli", "trainer", "--output-dir", str(run_dir),
         "--max-steps", str(STEPS), "--trainer.num-threads", "1", "--trainer.checkpoint.interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    orchestrator = subprocess.run(
        [sys.executable, "-m", "asyncrl.cli", "orchestrator", "-c", str(config), "--output-dir", str(run_dir),
         "--max-steps", str(STEPS), "--orchestrator.client.base-urls", json.dumps([server_url]),
         "--orchestrator.batch-size", "8", "--orchestrator.group-size", "4",
         "--orchestrator.sampling.max-tokens", "8"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert orchestrator.returncode == 0, orchestrator.stderr[-3000:]
    _, trainer_err = trainer.communicate(timeout=600)
    assert trainer.returncode == 0, trainer_err[-3000:]
    return orchestrator


@pytest.mark.slow
def test_an_eval_every_2_steps_reports_at_the_start_at_those_steps_and_on_the_final_weights(
    start_server, tmp_path
):
    server = start_server("tiny")
    orchestrator = _run(tmp_path, server.url)

    evals = read_metrics(tmp_path, "eval")
    assert [row["step"] for row in evals] == [0, 2, 4]
    for row in evals:
        assert row["policy_version"] >= row["step"]
        assert 0.0 <= row["held-out/avg@2"] <= 1.0 and row["held-out/errors"] == 0
        assert 0.0 <= row["held-out/pass@1"] <= row["held-out/pass@2"] <= 1.0
        assert row["held-out/seconds"] > 0
    assert evals[-1]["policy_version"] == STEPS, "the final eval ran on the final weights"
    assert "eval of step 4 on policy v4" in orchestrator.stderr
