"""`asyncrl rl`: three processes from one config, one progress bar, a report, clean failures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asyncrl.evals.server_process import free_port
from asyncrl.run_dir import read_metrics

SMALL = [
    "--orchestrator.batch-size",
    "8",
    "--orchestrator.group-size",
    "4",
    "--orchestrator.sampling.max-tokens",
    "12",
]


def _rl(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "--inference.port", str(free_port()), *SMALL, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_rl_runs_the_three_processes_and_writes_the_run_dir(tmp_path):
    run = tmp_path / "run"
    result = _rl("--output-dir", str(run), "--max-steps", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reward: first step" in result.stdout
    for name in ("config.toml", "report.png", "metrics.jsonl", "logs/inference.log", "logs/trainer.log",
                 "logs/orchestrator.log", "weights/step_3/STABLE", "samples/step_3.jsonl"):  # fmt: skip
        assert (run / name).exists(), name
    assert [m["step"] for m in read_metrics(run, "trainer")] == [1, 2, 3]

    again = _rl("--output-dir", str(run), "--max-steps", "3")
    assert again.returncode == 1 and "--resume true" in again.stderr


def test_a_crashing_process_stops_the_run_and_shows_its_log(tmp_path):
    result = _rl(
        "--output-dir", str(tmp_path / "run"), "--max-steps", "2", "--orchestrator.env.name", "no-such-env"
    )
    assert result.returncode == 1
    assert "orchestrator process stopped" in result.stderr and "no environment 'no-such-env'" in result.stderr
