"""Target-token logprobs and entropy from hidden states, a block of positions at a time.

The LM head's logits (positions x vocabulary, in float32 for the softmax) are the largest tensor of a
step: at a 150k vocabulary and 16k tokens, tens of GB. Here they exist for `chunk` positions at a time,
in the forward and again in the backward, which recomputes each block's logits from the saved hidden
states instead of keeping them: one extra head matmul buys memory bounded by chunk x vocabulary.
"""

from __future__ import annotations

import torch

CHUNK = 1024
"""Positions whose logits exist at once."""


def _block(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, inv_temperature: torch.Tensor
) -> torch.Tensor:
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    return logits.float() * inv_temperature.unsqueeze(1)


class _ChunkedLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(  # noqa: ANN205 - autograd.Function's signature
        ctx,  # noqa: ANN001
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        inv_temperature: torch.Tensor,
        chunk: int,
    ):
        logprobs = torch.empty(len(hidden), dtype=torch.float32, device=hidden.device)
        entropy = torch.empty_like(logprobs)
        for start in range(0, len(hidden), chunk):
            end = start + chunk
            logits = _block(hidden[start:end], weight, bias, inv_temperature[start:end])
            norm = logits.logsumexp(dim=-1)
            logprobs[start:end] = logits.gather(1, targets[start:end, None]).squeeze(1) - norm
            probs = (logits - norm.unsqueeze(1)).exp_()
            entropy[start:end] = norm - (probs * logits).sum(dim=-1)
        ctx.save_for_backward(hidden, weight, bias, targets, inv_temperature)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs: torch.Tensor, _grad_entropy: torch.Tensor):  # noqa: ANN001, ANN205
        hidden, weight, bias, targets, inv_temperature = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if ctx.needs_input_grad[2] else None
        for start in range(0, len(hidden), ctx.chunk):
            end = start + ctx.chunk
            h = hidden[start:end]
            logits = _block(h, weight, bias, inv_temperature[start:end])
            # d logprob[target] / d logits = (onehot(target) - softmax) / T, times the incoming gradient.
            grad = logits.softmax(dim=-1).mul_(-1)
            grad.scatter_add_(1, targets[start:end, None], torch.ones_like(grad[:, :1]))
            grad.mul_((grad_logprobs[start:end] * inv_temperature[start:end]).unsqueeze(1))
            # The matmuls run in the compute dtype, as every other layer's under a mixed-precision policy
            # (bf16 on GPUs: several times float32's rate); the head's gradient sums over blocks in fp32.
            grad = grad.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[start:end] = grad @ weight
            if grad_weight is not None:
                grad_weight += grad.T @ h
            if grad_bias is not None:
                grad_bias += grad.sum(dim=0)
        grad_weight = grad_weight.to(weight.dtype) if grad_weight is not None else None
        grad_bias = grad_bias.to(bias.dtype) if grad_bias is not None else None
        return grad_hidden, grad_weight, grad_bias, None, None, None


def chunked_logprobs(
    hidden: torch.Tensor,
    head: torch.nn.Linear,
    targets: torch.Tensor,
    temperatures: torch.Tensor,
    chunk: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logprob of each position's target under softmax(head(hidden) / T) (float32, with grad through
    `hidden` and the head), and that distribution's entropy (no grad). hidden [N, H], targets and
    temperatures [N]."""
    return _ChunkedLogprobs.apply(hidden, head.weight, head.bias, targets, 1.0 / temperatures, chunk)
