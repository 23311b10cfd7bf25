"""Token sampling for a batch of rows with per-row temperature, top-p and seed.

Logprobs are those of the distribution actually sampled from: softmax(logits / T), restricted to the
top-p nucleus and renormalised. Greedy rows (T = 0) report the model's own distribution (T = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asyncrl.distributions import GREEDY_BELOW, nucleus_logprobs


@dataclass
class SampledTokens:
    token_ids: torch.Tensor
    """[B] chosen ids."""
    logprobs: torch.Tensor
    """[B] logprob of each chosen id."""
    top_logprobs: torch.Tensor | None
    """[B, k] highest logprobs, or None when no row asked for any."""
    top_ids: torch.Tensor | None


def sample(
    logits: torch.Tensor,
    temperature: list[float],
    top_p: list[float],
    generators: list[torch.Generator | None],
    default_generator: torch.Generator,
    top_k_logprobs: int,
) -> SampledTokens:
    """Sample one token per row of `logits` [B, V] on their device.

    `generators[i]` is row i's own generator (on that device) when its request gave a seed, so its tokens
    do not depend on which other requests share the batch; other rows draw from `default_generator`. The
    per-row settings are host lists, so deciding what to compute never waits on the device.
    """
    # Below 1e-5, logits / T overflows float32; such a temperature means greedy (as in vLLM).
    greedy = [t < GREEDY_BELOW for t in temperature]
    logits = logits.float()
    if all(greedy):
        token_ids = logits.argmax(dim=-1)
        logprobs = logits.log_softmax(dim=-1)
    else:
        device = logits.device
        scale = [1.0 if g else t for g, t in zip(greedy, temperature, strict=True)]
        scale = torch.tensor(scale, device=device)
        logprobs = (logits / scale.unsqueeze(1)).log_softmax(dim=-1)
        if any(p < 1 and not g for g, p in zip(greedy, top_p, strict=True)):
            nucleus = [1.0 if g else p for g, p in zip(greedy, top_p, strict=True)]
            logprobs = nucleus_logprobs(logprobs, torch.tensor(nucleus, device=device))
        # Gumbel-max: argmax(log p - log(-log U)), U uniform, draws from p with one noise tensor per step
        # (uniforms cost a sixth of exponential_'s draws on CPU, a few percent of a small model's decode).
        uniform = torch.rand(logprobs.shape, generator=default_generator, device=device)
        for row, generator in enumerate(generators):
            if generator is not None:
                uniform[row] = torch.rand(uniform.shape[1:], generator=generator, device=device)
        sampled = (logprobs - uniform.log_().neg_().log_()).argmax(dim=-1)
        token_ids = torch.where(torch.tensor(greedy, device=device), logits.argmax(dim=-1), sampled)
    chosen = logprobs.gather(1, token_ids.unsqueeze(1)).squeeze(1)
    top_values = top_ids = None
    if top_k_logprobs > 0:
        top_values, top_ids = logprobs.topk(top_k_logprobs, dim=-1)
    return SampledTokens(token_ids, chosen, top_values, top_ids)
