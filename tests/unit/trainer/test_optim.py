from __future__ import annotations

import pytest
import torch

from asyncrl.models import load_model
from asyncrl.trainer.config import OptimConfig
from asyncrl.trainer.optim import ShardedMuon, build_optimizers, lr_factor


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_muon_on_public_apis_matches_torch_muon_on_plain_tensors(device):
    torch.manual_seed(0)
    weights = [torch.randn(16, 8, device=device), torch.randn(8, 24, device=device)]
    ours = [w.clone().requires_grad_() for w in weights]
    theirs = [w.clone().requires_grad_() for w in weights]
    opt_ours = ShardedMuon(ours, ns_dtype=torch.bfloat16, lr=0.02, weight_decay=0.1)
    opt_theirs = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    for _ in range(3):
        grads = [torch.randn_like(w) for w in weights]
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(ours, theirs, strict=True):
        # The same ops in the same order: equal on the CPU; a GPU's bf16 matmuls may pick other kernels.
        torch.testing.assert_close(a, b, rtol=0, atol=0 if device == "cpu" else 1e-6)


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    model = load_model("tiny")
    muon, adamw = build_optimizers(model, OptimConfig(type="muon"))
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = [names[id(p)] for g in muon.param_groups for p in g["params"]]
    adamw_names = [names[id(p)] for g in adamw.param_groups for p in g["params"]]
    assert all(n.endswith("proj.weight") for n in muon_names)
    assert any("embed_tokens" in n for n in adamw_names)
    assert any("norm" in n for n in adamw_names) and any("bias" in n for n in adamw_names)
    assert len(muon_names) + len(adamw_names) == len(names)


@pytest.mark.parametrize(
    ("scheduler", "step", "expected"),
    [
        ("constant", 0, 0.25),  # warm-up: (0 + 1) / 4
        ("constant", 3, 1.0),
        ("constant", 50, 1.0),
        ("linear", 4, 1.0),
        ("linear", 9, 0.1 + 0.9 * 0.5),  # halfway from 1 to min_lr_ratio 0.1
        ("linear", 14, 0.1),
        ("cosine", 9, 0.1 + 0.9 * 0.5),
        ("cosine", 14, 0.1),
    ],
)
def test_lr_schedules(scheduler, step, expected):
    config = OptimConfig(scheduler=scheduler, warmup_steps=4, min_lr_ratio=0.1)
    assert lr_factor(step, config, total_steps=14) == pytest.approx(expected)
