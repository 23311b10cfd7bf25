"""`asyncrl monitor RUN_DIR`: the trackers of a run whose processes were started one by one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asyncrl.monitor.config import MonitorConfig
from asyncrl.monitor.service import Monitor
from asyncrl.transport.metrics import append_metrics

pytest.importorskip("tensorboard")
MONITOR = [sys.executable, "-m", "asyncrl.cli", "monitor"]


def _run_dir(path, steps, max_steps):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(f"max_steps = {max_steps}\n")
    for step in range(1, steps + 1):
        append_metrics(path, "trainer", step, {"loss": 1 / step})
    return path


def test_it_logs_the_run_until_its_last_step_then_exits(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _run_dir(tmp_path / "run", steps=3, max_steps=3)
    result = subprocess.run([*MONITOR, str(run), "--monitor.tensorboard", "true"], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("trainer/loss")] == [1, 2, 3]


def test_a_second_follower_of_one_run_is_refused_naming_the_first(tmp_path):
    run = _run_dir(tmp_path / "run", steps=1, max_steps=3)
    with Monitor(run, MonitorConfig(tensorboard=True)):
        result = subprocess.run([*MONITOR, str(run), "--monitor.tensorboard", "true"], capture_output=True,
                                text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "already logs" in result.stderr and "Traceback" not in result.stderr


def test_without_a_tracker_or_a_run_dir_it_says_what_to_add(tmp_path):
    none_on = subprocess.run([*MONITOR, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert none_on.returncode == 1 and "--monitor.wandb true" in none_on.stderr
    missing = subprocess.run([*MONITOR, str(tmp_path / "nope"), "--monitor.tensorboard", "true"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 1 and "is not a directory" in missing.stderr
