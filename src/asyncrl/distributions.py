"""The sampling distributions a token is drawn from, computed the same way by the engine that samples and
by the verifier that checks what was sampled: softmax(logits / T) restricted to the top-p nucleus."""

from __future__ import annotations

import torch

GREEDY_BELOW = 1e-5
"""Temperatures below this are greedy (argmax); their logprobs are the model's own (T = 1)."""


def nucleus_logprobs(logprobs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask tokens outside each row's top-p nucleus and renormalise; the top token always stays."""
    sorted_lp, order = logprobs.sort(dim=-1, descending=True)
    probs = sorted_lp.exp()
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= top_p.unsqueeze(1)
    drop_sorted[:, 0] = False  # even a top_p that rounds to 0 keeps the most likely token
    drop = torch.zeros_like(drop_sorted).scatter_(1, order, drop_sorted)
    masked = logprobs.masked_fill(drop, float("-inf"))
    return masked - masked.logsumexp(dim=-1, keepdim=True)
