"""RL and SFT losses over the completion tokens of a packed micro-batch.

Every loss has the same signature, so `trainer.loss.type = "custom"` can point at a user function:

    def my_loss(batch: LossInputs, config: LossConfig) -> LossOutput

`LossInputs` holds 1-D tensors over the micro-batch's predicted tokens. The returned `loss` is a *sum*
over tokens divided by `batch.total_loss_tokens` (the loss tokens of the whole step, across all ranks),
so micro-batches and ranks add up to one step-level mean. Metrics are sums over tokens, in the same way
(the trainer divides them by the step's loss tokens).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from asyncrl.errors import UserError
from asyncrl.trainer.config import LossConfig


@dataclass
class LossInputs:
    logprobs: torch.Tensor
    """Trainer logprobs of the sampled tokens (with grad), temperature applied."""
    inference_logprobs: torch.Tensor
    """Logprobs the inference server reported for the same tokens."""
    advantages: torch.Tensor
    loss_mask: torch.Tensor
    """True for completion tokens the model generated; prompt, environment and tool tokens are False."""
    sample_ids: torch.Tensor
    """Which sample of the micro-batch each token belongs to (0..S-1), for sequence-level masking."""
    total_loss_tokens: int


@dataclass
class LossOutput:
    loss: torch.Tensor
    masked_tokens: torch.Tensor
    """How many loss tokens were masked out of the gradient (a sum, not a fraction)."""
    mismatch_kl: torch.Tensor
    """Sum over loss tokens of the k3 estimate of KL(inference || trainer)."""


LossFn = Callable[[LossInputs, LossConfig], LossOutput]


def _log_ratio(batch: LossInputs) -> torch.Tensor:
    return batch.logprobs - batch.inference_logprobs


def _k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate r - 1 - log r of KL(inference || trainer): unbiased, never negative."""
    return log_ratio.exp() - 1 - log_ratio


def _mismatch_kl(log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (_k3(log_ratio.detach()) * mask).sum()


def _sequence_log_ratio(
    log_ratio: torch.Tensor, mask: torch.Tensor, sample_ids: torch.Tensor
) -> torch.Tensor:
    """Mean log-ratio of each token's sample (the log of the sample's geometric-mean ratio)."""
    n_samples = int(sample_ids.max()) + 1 if sample_ids.numel() else 0
    zeros = torch.zeros(n_samples, dtype=log_ratio.dtype, device=log_ratio.device)
    total = zeros.index_add(0, sample_ids, log_ratio.detach() * mask)
    count = zeros.index_add(0, sample_ids, mask.to(log_ratio.dtype))
    return (total / count.clamp(min=1))[sample_ids]


def masked_is(batch: LossInputs, config: LossConfig) -> LossOutput:
    """Importance-weighted policy gradient; tokens and whole sequences with an extreme ratio are masked."""
    mask = batch.loss_mask.to(batch.logprobs.dtype)
    log_ratio = _log_ratio(batch)
    ratio = log_ratio.exp()
    token_ok = (ratio >= config.token_low) & (ratio <= config.token_high)
    seq_ratio = _sequence_log_ratio(log_ratio, mask, batch.sample_ids).exp()
    seq_ok = (seq_ratio >= config.seq_low) & (seq_ratio <= config.seq_high)
    keep = (token_ok & seq_ok).to(mask.dtype) * mask
    k3 = _k3(log_ratio) * mask
    loss = (-batch.advantages * ratio * keep).sum() + config.mismatch_kl_coef * k3.sum()
    return LossOutput(loss / batch.total_loss_tokens, (mask - keep).sum(), k3.detach().sum())


def dppo_kl(batch: LossInputs, config: LossConfig) -> LossOutput:
    """DPPO-binary masking on the probability difference, plus a squared log-ratio penalty."""
    mask = batch.loss_mask.to(batch.logprobs.dtype)
    log_ratio = _log_ratio(batch)
    dp = (batch.logprobs.exp() - batch.inference_logprobs.exp()).detach()
    positive = batch.advantages > 0
    dropped = torch.where(positive, dp > config.mask_high, dp < -config.mask_low)
    keep = (~dropped).to(mask.dtype) * mask
    per_token = -keep * batch.advantages * log_ratio.exp() + config.kl_tau * log_ratio.square() * mask
    return LossOutput(
        per_token.sum() / batch.total_loss_tokens, (mask - keep).sum(), _mismatch_kl(log_ratio, mask)
    )


def grpo_clip(batch: LossInputs, config: LossConfig) -> LossOutput:
    """PPO clipping of the ratio to [1 - eps, 1 + eps], and for negative advantages a cap `clip_delta`
    on the ratio itself (INTELLECT-2's two-sided clipping)."""
    mask = batch.loss_mask.to(batch.logprobs.dtype)
    log_ratio = _log_ratio(batch)
    ratio = log_ratio.exp()
    advantages = batch.advantages
    capped = torch.where(advantages < 0, ratio.clamp(max=config.clip_delta), ratio)
    clipped = ratio.clamp(1 - config.clip_eps, 1 + config.clip_eps)
    unclipped_term, clipped_term = capped * advantages, clipped * advantages
    objective = torch.minimum(unclipped_term, clipped_term)
    # A token gives no gradient where the objective took a clipped (constant) branch.
    no_grad = (clipped_term < unclipped_term) & (
        (ratio < 1 - config.clip_eps) | (ratio > 1 + config.clip_eps)
    )
    no_grad |= (advantages < 0) & (ratio > config.clip_delta)
    loss = -(objective * mask).sum() / batch.total_loss_tokens
    return LossOutput(loss, (no_grad.to(mask.dtype) * mask).sum(), _mismatch_kl(log_ratio, mask))


def sft(batch: LossInputs, config: LossConfig) -> LossOutput:
    """Cross-entropy on the loss tokens."""
    mask = batch.loss_mask.to(batch.logprobs.dtype)
    zero = torch.zeros((), dtype=mask.dtype, device=mask.device)
    return LossOutput(-(batch.logprobs * mask).sum() / batch.total_loss_tokens, zero, zero)


BUILT_IN: dict[str, LossFn] = {"masked_is": masked_is, "dppo_kl": dppo_kl, "grpo_clip": grpo_clip, "sft": sft}


class LossImportError(UserError):
    """`trainer.loss.import_path` does not name an importable function."""


def resolve_loss(config: LossConfig) -> LossFn:
    """The loss function `config.type` names (for `custom`, the function at `config.import_path`)."""
    if config.type != "custom":
        return BUILT_IN[config.type]
    if not config.import_path or ":" not in config.import_path:
        raise LossImportError("trainer.loss.type = custom needs trainer.loss.import_path = 'module:function'")
    module_name, _, attr = config.import_path.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise LossImportError(f"cannot load the custom loss {config.import_path!r}: {e}") from None
    if not callable(function):
        raise LossImportError(f"{config.import_path!r} is not a function")
    return function
