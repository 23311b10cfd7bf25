"""A trainer killed after step 3 resumes from its checkpoint and continues exactly as if never stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from asyncrl.transport.layout import rollouts_dir
from asyncrl.transport.metrics import read_metrics
from tests.batches import write_batches

OPTIONS = [
    "--max-steps", "6",
    "--trainer.checkpoint.interval", "1",
    "--trainer.optim.lr", "0.01",
    "--trainer.optim.scheduler", "cosine",
    "--trainer.optim.warmup-steps", "2",
    "--trainer.num-threads", "1",
]  # fmt: skip


def _command(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "asyncrl.cli", "trainer", "--output-dir", str(run_dir), *OPTIONS, *extra]


def _losses(run_dir: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in read_metrics(run_dir, "trainer")}  # later lines win


@pytest.mark.slow
@pytest.mark.parametrize(
    "optim, variant",
    [("adamw", None), ("muon", None), ("muon", "lora"), ("muon", "moe")],
    ids=["adamw", "muon", "muon-lora", "muon-moe"],
)
def test_killed_trainer_resumes_with_exactly_the_same_losses(tmp_path, optim, variant):
    if variant == "lora":
        pytest.importorskip("peft")
    # With LoRA a checkpoint holds the frozen base too, and the step's weights are the adapter alone.
    extra = {
        "lora": ["--model.lora.rank", "4"],
        "moe": ["--model.path", "tiny-moe", "--trainer.router-replay", "true"],
    }.get(variant, [])
    options = ["--trainer.optim.type", optim, *extra]
    weights = "adapter_model.safetensors" if variant == "lora" else "model.safetensors"
    batches, straight, resumed = tmp_path / "batches", tmp_path / "straight", tmp_path / "resumed"
    # The trainer deletes batches its checkpoints cover: each run gets a copy.
    write_batches(batches, 6, model_name="tiny-moe" if variant == "moe" else "tiny")
    shutil.copytree(batches / "rollouts", straight / "rollouts")
    subprocess.run(_command(straight, *options), check=True, capture_output=True, timeout=600)

    # Only batches 1-3 exist: the trainer checkpoints step 3, then waits for batch 4 and is killed there.
    resumed.mkdir()
    for step in (1, 2, 3):
        shutil.copytree(rollouts_dir(batches, step), rollouts_dir(resumed, step))
    process = subprocess.Popen(
        _command(resumed, *options), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (resumed / "checkpoints" / "step_3" / "trainer_state.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "trainer died or stalled before step 3"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    for step in (4, 5, 6):
        shutil.copytree(rollouts_dir(batches, step), rollouts_dir(resumed, step))
    result = subprocess.run(_command(resumed, *options, "--resume", "latest"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]

    assert _losses(resumed) == _losses(straight), "losses after resume differ from the uninterrupted run"
    a = load_file(str(straight / "weights" / "step_6" / weights))
    b = load_file(str(resumed / "weights" / "step_6" / weights))
    assert all((a[k] == b[k]).all() for k in a)
    assert len(list((resumed / "checkpoints").glob("step_*"))) == 2, "keep_last=2 retention"


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    result = subprocess.run(
        _command(tmp_path, "--resume", "latest"), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "no complete checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    broken = tmp_path / "checkpoints" / "step_2"
    broken.mkdir(parents=True)
    (broken / "trainer_state.json").write_text('{"format_version": 1, "step": 2}')
    (broken / "__0_0.distcp").write_bytes(b"garbage")
    result = subprocess.run(_command(tmp_path, "--resume", "2"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "incomplete" in result.stderr
    assert "Traceback" not in result.stderr
    (broken / ".metadata").write_bytes(b"garbage")
    result = subprocess.run(_command(tmp_path, "--resume", "2"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "unreadable" in result.stderr.splitlines()[-1]
