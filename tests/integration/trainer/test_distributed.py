"""One rank and two FSDP2 ranks (gloo on CPU, launched by torchrun) train identically."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asyncrl.transport.metrics import read_metrics
from tests.batches import write_batches

STEPS = 2


LORA = ["--model.lora.rank", "4", "--model.lora.alpha", "8"]
"""A LoRA adapter on every linear layer; its published weights are adapter_model.safetensors."""
MOE = [
    "--model.path",
    "tiny-moe",
    "--trainer.router-replay",
    "true",
    "--trainer.moe-balance-loss-coef",
    "0.01",
]
"""The GLM-4.5-shaped MoE (its expert stacks sharded by expert), with router replay and the balance loss."""


def _train(run_dir: Path, ranks: int, optim: str, extra: list[str]) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    command = [*(launcher if ranks > 1 else [sys.executable]), "-m", "asyncrl.cli", "trainer"]
    command += ["--output-dir", str(run_dir), "--max-steps", str(STEPS), "--trainer.optim.type", optim]
    command += [
        "--trainer.optim.lr",
        "0.01",
        "--trainer.micro-batch-tokens",
        "64",
        "--trainer.num-threads",
        "1",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "optim, extra, weights",
    # LoRA with Muon: the adapter's matrices alone, with no AdamW beside them, the path AdamW's shares.
    [("adamw", [], "model"), ("muon", [], "model"), ("muon", LORA, "adapter_model"), ("muon", MOE, "model")],
    ids=["adamw", "muon", "muon-lora", "muon-moe"],
)
def test_one_rank_and_two_fsdp_ranks_give_the_same_losses_and_weights(tmp_path, optim, extra, weights):
    if extra:
        pytest.importorskip("peft")
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    write_batches(single, STEPS, per_step=12, model_name="tiny-moe" if extra == MOE else "tiny")
    shutil.copytree(single / "rollouts", sharded / "rollouts")
    _train(single, 1, optim, extra)
    _train(sharded, 2, optim, extra)

    losses = [[m["loss"] for m in read_metrics(run, "trainer")] for run in (single, sharded)]
    assert len(losses[0]) == STEPS
    assert losses[1] == pytest.approx(losses[0], rel=1e-5, abs=1e-6)
    if extra == MOE:  # the routing figures, too, cover both ranks' tokens
        figures = [
            [m["moe/expert_load_cv"] for m in read_metrics(run, "trainer")] for run in (single, sharded)
        ]
        assert figures[1] == pytest.approx(figures[0], rel=1e-6)
    final = [
        load_file(str(run / "weights" / f"step_{STEPS}" / f"{weights}.safetensors"))
        for run in (single, sharded)
    ]
    assert final[0].keys() == final[1].keys()
    initial = load_file(str(next((single / "weights").glob("step_1")) / f"{weights}.safetensors"))
    # Adam moves a weight by about lr (1e-2) a step whatever its gradient's size: float noise in a
    # near-zero gradient shows as a few 1e-5, a wrong gradient as ~1e-2.
    for name, tensor in final[0].items():
        assert torch.allclose(tensor, final[1][name], atol=5e-5), name
    assert any(not torch.equal(initial[n], final[0][n]) for n in initial), "training changed nothing"
