"""Optimizers (AdamW; Muon for hidden matrices plus AdamW for the rest) and learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.distributed.tensor import DTensor, distribute_tensor

from asyncrl.trainer.config import OptimConfig


def newton_schulz(
    matrix: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float, dtype: torch.dtype
) -> torch.Tensor:
    """Approximately orthogonalise `matrix` with torch.optim.Muon's quintic iteration, computed in
    `dtype`. The iteration multiplies small singular directions by up to a**steps (~500), so bfloat16
    rounding of the input shows in the result; float32 keeps runs that differ only in float noise
    (1 rank vs N ranks) within float tolerance, and is the fast choice on CPUs.

    A [..., A, B] input is a batch of [A, B] matrices (a mixture of experts' stacked weights), each
    orthogonalised on its own: one batched matmul per iteration instead of a Python loop over experts.
    """
    a, b, c = coefficients
    x = matrix.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    if x.ndim == 2:
        # addmm and the whole-tensor norm are torch.optim.Muon's own ops, so a matrix's result stays
        # bitwise equal to it.
        x = x / x.norm().clamp(min=eps)
        for _ in range(steps):
            gram = x @ x.T
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    else:
        batch = x.shape[:-2]
        x = x.reshape(-1, *x.shape[-2:])
        x = x / torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp(min=eps)
        for _ in range(steps):
            gram = x @ x.mT
            x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
        x = x.reshape(*batch, *x.shape[-2:])
    return (x.mT if tall else x).to(matrix.dtype)


NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""The quintic Newton-Schulz coefficients of Keller Jordan's Muon (torch.optim.Muon's defaults)."""


def muon_lr(lr: float, shape: torch.Size) -> float:
    """The step size of an [A, B] matrix's orthogonalised update, scaled to AdamW's update RMS
    (0.2 * sqrt(max(A, B)), Moonshot's rule), so one learning rate serves Muon and AdamW."""
    return lr * 0.2 * math.sqrt(max(shape[0], shape[1]))


class ShardedMuon(torch.optim.Optimizer):
    """Muon (Nesterov momentum, orthogonalised by Newton-Schulz, AdamW-matched step size, decoupled
    weight decay) on public torch.optim APIs only, exact when parameters are FSDP2-sharded DTensors.

    Newton-Schulz orthogonalises a whole matrix; run on a shard it would orthogonalise each rank's rows
    on their own. Here the momentum stays sharded (it is elementwise), the update matrix is gathered,
    orthogonalised identically on every rank, and each rank keeps its own shard of the result.

    A 3-D parameter is a mixture of experts' stack of [A, B] matrices, one per expert along dim 0
    (transformers' fused `experts.gate_up_proj` and `experts.down_proj`). Each expert is a linear map
    of its own, so each slice is orthogonalised and stepped exactly as if it were its own 2-D
    parameter; orthogonalising the stack as one matrix would couple experts that never share inputs.
    """

    def __init__(
        self,
        params,  # noqa: ANN001 - torch.optim's ParamsT
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        eps: float = 1e-7,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for param in group["params"]:
                if param.ndim not in (2, 3):
                    raise ValueError(
                        "Muon updates 2-D matrices and 3-D stacks of them (one per expert), "
                        f"got a {param.ndim}-D parameter of shape {tuple(param.shape)}"
                    )
        self.ns = (NS_COEFFICIENTS, ns_steps, eps, ns_dtype)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - the torch.optim.Optimizer signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad)
                buffer = state["momentum_buffer"]
                buffer.lerp_(grad, 1 - momentum)
                update = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                param.mul_(1 - lr * group["weight_decay"])
                # A stack's step is sized by one expert's matrix, the map each slice really is.
                param.add_(self._orthogonalise(update), alpha=-muon_lr(lr, param.shape[-2:]))
        return loss

    def _orthogonalise(self, update: torch.Tensor) -> torch.Tensor:
        if not isinstance(update, DTensor):
            return newton_schulz(update, *self.ns)
        full = newton_schulz(update.full_tensor(), *self.ns)
        # Every rank holds the same full result, so each can cut its own shard without communication.
        return distribute_tensor(full, update.device_mesh, update.placements, src_data_rank=None)


ROUTER_MODULES = ("gate", "router")
"""Names of a mixture of experts' router module (`mlp.gate` in transformers' GLM-MoE and Qwen3-MoE)."""


def _is_router(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[-2] in ROUTER_MODULES


def _is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    return param.ndim in (2, 3) and "embed" not in name and "lm_head" not in name and not _is_router(name)


def build_optimizers(model: torch.nn.Module, config: OptimConfig) -> list[torch.optim.Optimizer]:
    """AdamW over all parameters that train, or Muon over hidden matrices plus AdamW over embeddings,
    head, biases, norms and MoE routers (none, when only a LoRA adapter's matrices train: then each of
    its A and B is orthogonalised on its own). Muon's update is scaled to AdamW's RMS, so one learning
    rate serves both.

    Hidden matrices include the 3-D expert stacks, which Muon treats expert by expert, each expert's
    fused `gate_up_proj` as the one [2I, H] matrix transformers stores (a dense MLP's gate and up are
    two; the MoE warm-up and job were tuned with this). A router stays on
    AdamW, as is usual for MoE: orthogonalising its update would give a rarely chosen expert's logit as
    big a step as a busy one's and unsettle which experts are picked."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    adamw_kwargs = {
        "lr": config.lr,
        "betas": config.betas,
        "eps": config.eps,
        "weight_decay": config.weight_decay,
    }
    if config.type == "adamw":
        return [torch.optim.AdamW([p for _, p in named], **adamw_kwargs)]
    matrices = [p for n, p in named if _is_hidden_matrix(n, p)]
    others = [p for n, p in named if not _is_hidden_matrix(n, p)]
    muon = ShardedMuon(
        matrices,
        ns_dtype=getattr(torch, config.muon_ns_dtype),
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.muon_momentum,
    )
    return [muon, torch.optim.AdamW(others, **adamw_kwargs)] if others else [muon]


def lr_factor(step: int, config: OptimConfig, total_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based): linear warm-up, then the shape."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.scheduler == "constant":
        return 1.0
    decay_steps = max(1, total_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    floor = config.min_lr_ratio
    if config.scheduler == "linear":
        return floor + (1 - floor) * (1 - progress)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizers: list[torch.optim.Optimizer], lr: float) -> None:
    for group in _groups(optimizers):
        group["lr"] = lr


def _groups(optimizers: list[torch.optim.Optimizer]) -> Iterator[dict]:
    for optimizer in optimizers:
        yield from optimizer.param_groups
