"""One optimizer step's worth of forward/backward over this rank's micro-batches, and the update."""

from __future__ import annotations

import time

import torch

from asyncrl.moe import RouterReplay, expert_load_cv
from asyncrl.trainer.config import LossConfig, TrainerConfig
from asyncrl.trainer.distributed import Ranks, all_reduce_sum
from asyncrl.trainer.losses import LossFn, LossInputs
from asyncrl.trainer.optim import lr_factor, set_lr
from asyncrl.trainer.packing import MicroBatch, loss_token_count, micro_batches_for_rank
from asyncrl.trainer.policy import forward_logprobs
from asyncrl.transport.batches import Batch

FIGURES = ("loss", "mismatch_kl", "masked_frac", "entropy")


def accumulate_gradients(
    model: torch.nn.Module,
    micro_batches: list[MicroBatch],
    loss_fn: LossFn,
    loss_config: LossConfig,
    total_loss_tokens: int,
    ranks: Ranks,
    routing: RouterReplay | None = None,
    balance_coef: float = 0.0,
) -> dict[str, float]:
    """Forward and backward every micro-batch; returns the step's figures, averaged over all its loss
    tokens on all ranks. Gradients add up to those of the step-level mean loss (plus, for MoE models with
    `balance_coef`, the load-balancing loss, each micro-batch weighted by its share of the loss tokens)."""
    sums = torch.zeros(len(FIGURES) + 1, dtype=torch.float64, device=ranks.device)
    for mb in micro_batches:
        mb = mb.to(ranks.device)
        if routing is not None:
            # A micro-batch with no loss token (a rank's filler, packing.EMPTY) adds nothing to the load
            # figures or the balance loss, so those of N ranks are those of one.
            routing.replaying(
                mb.routed_experts, ~mb.padding if mb.loss_tokens else torch.zeros_like(mb.padding)
            )
        logprobs, entropy = forward_logprobs(model, mb)
        inputs = LossInputs(
            logprobs=logprobs,
            inference_logprobs=mb.inference_logprobs,
            advantages=mb.advantages,
            loss_mask=mb.loss_mask,
            sample_ids=mb.sample_ids,
            total_loss_tokens=total_loss_tokens,
        )
        out = loss_fn(inputs, loss_config)
        loss = out.loss
        balance = routing.take_balance_loss() if routing is not None else None
        if balance is not None:
            loss = loss + balance_coef * balance * (mb.loss_tokens / max(1, total_loss_tokens))
        # FSDP averages gradients over ranks; the loss is already a global mean, so undo the division.
        (loss * ranks.world_size).backward()
        mask = mb.loss_mask.to(entropy.dtype)
        sums += torch.stack(
            [
                out.loss.detach() * total_loss_tokens,
                out.mismatch_kl.detach(),
                out.masked_tokens.detach(),
                (entropy * mask).sum(),
                (balance.detach() if balance is not None else entropy.new_zeros(())) * mb.loss_tokens,
            ]
        ).double()
    sums = all_reduce_sum(sums, ranks) / max(1, total_loss_tokens)
    figures = dict(zip(FIGURES, sums[: len(FIGURES)].tolist(), strict=True))
    if routing is not None:
        routing.finish()
        figures.update(routing_figures(routing, ranks))
        if routing.balance:
            figures["moe/balance_loss"] = float(sums[-1])
    return figures


def routing_figures(routing: RouterReplay, ranks: Ranks) -> dict[str, float]:
    """The step's MoE figures over all ranks: the share of sampled positions where the trainer's own
    router disagrees with inference's (with replay off, the mismatch replay removes), and per layer the
    coefficient of variation of tokens per expert."""
    stats = routing.take_stats()
    figures: dict[str, float] = {}
    if stats.expert_tokens is None:
        return figures
    counts = all_reduce_sum(stats.expert_tokens.to(ranks.device, torch.float64), ranks).cpu()
    recorded = all_reduce_sum(
        torch.tensor(
            [stats.recorded_tokens, stats.differing_tokens], dtype=torch.float64, device=ranks.device
        ),
        ranks,
    ).tolist()
    if recorded[0]:
        figures["moe/routing_mismatch_frac"] = recorded[1] / recorded[0]
    cv = expert_load_cv(counts)
    figures["moe/expert_load_cv"] = float(cv.mean())
    for layer, value in enumerate(cv.tolist()):
        figures[f"moe/layer{layer}_load_cv"] = value
    return figures


def optimizer_step(
    model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], max_grad_norm: float
) -> float:
    """Clip the global gradient norm (when max_grad_norm > 0), step every optimizer, clear gradients;
    returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm or float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    for optimizer in optimizers:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(norm)


def train_on_batch(
    model: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    batch: Batch,
    loss_fn: LossFn,
    config: TrainerConfig,
    step: int,
    total_steps: int,
    ranks: Ranks,
    routing: RouterReplay | None = None,
) -> dict[str, float]:
    """Optimizer step `step` (1-based) on `batch`: schedule the lr, pack this rank's share, accumulate
    gradients, update. Returns the step's loss figures with `grad_norm`, `lr` and the seconds each part
    took (`pack_s`, `forward_backward_s`, `optimizer_s`), and for MoE models (`routing`) their routing
    figures."""
    lr = config.optim.lr * lr_factor(step - 1, config.optim, total_steps)
    set_lr(optimizers, lr)
    start = time.perf_counter()
    micro_batches = micro_batches_for_rank(
        batch, config.row_tokens, config.micro_batch_tokens, ranks.rank, ranks.world_size
    )
    packed = time.perf_counter()
    figures = accumulate_gradients(
        model,
        micro_batches,
        loss_fn,
        config.loss,
        loss_token_count(batch),
        ranks,
        routing,
        config.moe_balance_loss_coef,
    )
    passed = time.perf_counter()  # accumulate_gradients' figures are on the host: the device is done
    figures["grad_norm"] = optimizer_step(model, optimizers, config.optim.max_grad_norm)
    figures.update(lr=lr, pack_s=packed - start, forward_backward_s=passed - packed,
                   optimizer_s=time.perf_counter() - passed)  # fmt: skip
    return figures
