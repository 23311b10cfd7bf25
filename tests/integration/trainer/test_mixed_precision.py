"""`model.dtype = "bfloat16"` trains in bf16 over float32 master weights (FSDP2's mixed-precision policy on
one rank), on the CPU and on a GPU, close to the float32 run on the CPU, and resumes from its
checkpoints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asyncrl.models import load_model
from asyncrl.transport.metrics import read_metrics
from tests.batches import write_batches

STEPS = 3
KEEP_EVERYTHING = (
    "--trainer.checkpoint.interval", "1",
    "--trainer.checkpoint.keep-last", str(STEPS),
    "--trainer.retention.rollouts", "all",
)  # fmt: skip


def _train(run_dir: Path, dtype: str, device: str, *extra: str) -> None:
    command = [sys.executable, "-m", "asyncrl.cli", "trainer", "--output-dir", str(run_dir)]
    command += ["--max-steps", str(STEPS), "--model.dtype", dtype, "--trainer.optim.lr", "0.01"]
    command += ["--trainer.device", device]
    command += ["--trainer.micro-batch-tokens", "64", "--trainer.num-threads", "1", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "weights" / f"step_{STEPS}" / "model.safetensors"))


def _cosine_of_updates(initial: dict, *runs: dict[str, torch.Tensor]) -> float:
    """How alike two runs' total updates point. Adam moves each weight by about lr a step whatever its
    gradient's size, so noise flips some small ones: compare where the updates point, not each weight."""
    moved = [torch.cat([(w[n] - initial[n]).flatten() for n in runs[0]]) for w in runs]
    return torch.nn.functional.cosine_similarity(*moved, dim=0).item()


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_bfloat16_compute_trains_close_to_float32_and_keeps_float32_weights(tmp_path, device):
    runs = {name: tmp_path / name for name in ("fp32", "bf16", "resumed")}
    write_batches(runs["fp32"], STEPS, per_step=12)
    for name in ("bf16", "resumed"):
        shutil.copytree(runs["fp32"] / "rollouts", runs[name] / "rollouts")
    _train(runs["fp32"], "float32", "cpu")
    _train(runs["bf16"], "bfloat16", device, *KEEP_EVERYTHING)

    fp32, bf16 = ([m["loss"] for m in read_metrics(runs[n], "trainer")] for n in ("fp32", "bf16"))
    # The first step starts from the same weights; after it, two Adam steps at lr 0.01 amplify rounding
    # (a loss near 0 then differs by more than any relative tolerance), so the later ones are bounded
    # against the scale of the losses instead.
    assert bf16[0] == pytest.approx(fp32[0], rel=0.01), "bf16 compute strays from the float32 run"
    scale = max(map(abs, fp32))
    assert bf16 == pytest.approx(fp32, abs=0.05 * scale), "bf16 training strays from the float32 run"
    assert bf16 != pytest.approx(fp32, rel=1e-6, abs=1e-7), "the bf16 run computed in float32"
    weights = _weights(runs["bf16"])
    assert all(t.dtype == torch.float32 for t in weights.values()), "master weights must stay float32"
    initial = load_model("tiny").state_dict()
    assert _cosine_of_updates(initial, weights, _weights(runs["fp32"])) > 0.9

    # A restart from the bf16 run's step-1 checkpoint continues as the run itself did: exactly on the CPU;
    # a GPU's backward sums some gradients with atomics, in no fixed order.
    shutil.copytree(runs["bf16"] / "checkpoints" / "step_1", runs["resumed"] / "checkpoints" / "step_1")
    _train(runs["resumed"], "bfloat16", device, "--resume", "1")
    resumed = [m["loss"] for m in read_metrics(runs["resumed"], "trainer")]
    resumed_weights = _weights(runs["resumed"])
    if device == "cpu":
        assert resumed == pytest.approx(bf16[1:], rel=1e-6)
        assert all(torch.equal(t, weights[name]) for name, t in resumed_weights.items())
    else:
        assert resumed == pytest.approx(bf16[1:], rel=1e-2)
        assert _cosine_of_updates(initial, resumed_weights, weights) > 0.99
