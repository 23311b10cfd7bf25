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


@pytest.mark.parametrize("ns_dtype", [torch.float32, torch.bfloat16])
def test_muon_steps_each_expert_of_a_3d_stack_as_its_own_matrix(ns_dtype):
    torch.manual_seed(0)
    # Tall and wide experts check both orientations of Newton-Schulz; more experts than max(A, B) or
    # fewer check that the step is sized by one expert's [A, B], not by the stack's first two dims.
    for shape in ((64, 16, 4), (4, 8, 32)):
        stack = torch.randn(shape).requires_grad_()
        initial = stack.detach().clone()
        slices = [s.clone().requires_grad_() for s in stack.detach()]
        kwargs = {"ns_dtype": ns_dtype, "lr": 0.02, "weight_decay": 0.1}
        opt_stack, opt_slices = ShardedMuon([stack], **kwargs), ShardedMuon(slices, **kwargs)
        for _ in range(3):
            grad = torch.randn(shape)
            stack.grad = grad.clone()
            for s, g in zip(slices, grad, strict=True):
                s.grad = g.clone()
            opt_stack.step()
            opt_slices.step()
        assert not torch.allclose(stack.detach(), initial, atol=1e-3)
        # Batched and per-matrix matmuls may round differently; bf16's ~500x amplification of small
        # singular directions shows that rounding, so its tolerance is wider.
        tol = 1e-6 if ns_dtype == torch.float32 else 5e-4
        torch.testing.assert_close(stack.detach(), torch.stack(slices).detach(), rtol=0, atol=tol)


@pytest.mark.parametrize("shape", [(8,), (2, 3, 4, 5)])
def test_muon_refuses_parameters_that_are_neither_matrices_nor_expert_stacks(shape):
    with pytest.raises(ValueError, match=f"{len(shape)}-D parameter"):
        ShardedMuon([torch.zeros(shape, requires_grad=True)], lr=0.02)


def test_muon_takes_expert_stacks_and_adamw_the_moe_router():
    model = load_model("tiny-moe")  # GLM-4.5-shaped, with the q/k/v biases that must land on AdamW
    muon, adamw = build_optimizers(model, OptimConfig(type="muon"))
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    adamw_names = {names[id(p)] for g in adamw.param_groups for p in g["params"]}

    moe, dense = "model.layers.1.mlp", "model.layers.0.mlp"
    assert {f"{moe}.experts.gate_up_proj", f"{moe}.experts.down_proj"} <= muon_names
    assert {f"{moe}.shared_experts.{m}_proj.weight" for m in ("gate", "up", "down")} <= muon_names
    assert {f"{dense}.{m}_proj.weight" for m in ("gate", "up", "down")} <= muon_names
    attention = {f"model.layers.{i}.self_attn.{m}_proj.weight" for i in (0, 1) for m in "qkvo"}
    assert attention <= muon_names

    assert f"{moe}.gate.weight" in adamw_names
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= adamw_names
    assert {
        f"model.layers.{i}.{n}.weight"
        for i in (0, 1)
        for n in ("input_layernorm", "post_attention_layernorm")
    } <= adamw_names
    biases = {n for n in names.values() if n.endswith(".bias")}
    assert biases and biases <= adamw_names
    assert muon_names.isdisjoint(adamw_names) and muon_names | adamw_names == set(names.values())


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
