"""Sampling and termination checks on synthetic distributions: honest draws pass, others fail."""

from __future__ import annotations

import pytest
import torch

from asyncrl.distributions import nucleus_logprobs
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.rollouts import Rollout
from asyncrl.toploc.sampling_checks import (
    SamplingCheck,
    SamplingStats,
    sampling_failures,
    termination_failures,
)

CONFIG = ToplocConfig()
EOS = (2,)


def _logits(n: int, sharpness: float, seed: int) -> torch.Tensor:
    """[n, 64] logits; larger sharpness, more confident predictions (a few near-certain steps too)."""
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 64, generator=generator) * sharpness * (1 + 3 * torch.rand(n, 1, generator=generator))
    )


def _draw(logits: torch.Tensor, temperature: float, top_p: float = 1.0, seed: int = 0) -> torch.Tensor:
    logprobs = (logits / temperature).log_softmax(dim=-1)
    if top_p < 1:
        logprobs = nucleus_logprobs(logprobs, torch.full((len(logits),), top_p))
    return torch.multinomial(logprobs.exp(), 1, generator=torch.Generator().manual_seed(seed)).squeeze(1)


def _check(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float, top_p: float = 1.0
) -> SamplingCheck:
    stats = SamplingStats()
    stats.add(logits, tokens, temperature, top_p, CONFIG)
    return stats.result()


def test_honest_draws_pass_at_any_temperature_top_p_and_confidence():
    failures = []
    for seed in range(300):
        temperature, top_p = [(1.0, 1.0), (0.7, 0.9), (1.3, 0.95)][seed % 3]
        logits = _logits(48, sharpness=[1, 3, 8][seed % 4 % 3], seed=seed)
        check = _check(logits, _draw(logits, temperature, top_p, seed), temperature, top_p)
        failures += sampling_failures(check, CONFIG)
    assert failures == []


def test_tokens_sampled_colder_than_claimed_fail():
    logits = _logits(128, sharpness=2, seed=0)
    check = _check(logits, _draw(logits, temperature=0.5), temperature=1.0)
    assert check.z < -CONFIG.max_sampling_z
    assert "colder" in " ".join(sampling_failures(check, CONFIG))


def test_tokens_sampled_hotter_than_claimed_fail():
    logits = _logits(128, sharpness=2, seed=0)
    check = _check(logits, _draw(logits, temperature=1.0), temperature=0.4)
    assert check.z > CONFIG.max_sampling_z
    assert "hotter" in " ".join(sampling_failures(check, CONFIG))


def test_a_token_outside_the_claimed_nucleus_fails():
    logits = _logits(8, sharpness=3, seed=0)
    tokens = _draw(logits, temperature=1.0, top_p=0.5)
    tokens[3] = logits[3].argmin()
    assert _check(logits, tokens, temperature=1.0, top_p=0.5).outside_nucleus == 1


def test_a_token_from_the_far_tail_fails():
    logits = _logits(8, sharpness=1, seed=0)
    logits[5, 7] = -40.0
    tokens = _draw(logits, temperature=1.0)
    tokens[5] = 7
    check = _check(logits, tokens, temperature=1.0)
    assert check.unlikely == 1
    assert sampling_failures(check, CONFIG) == ["1 token(s) from the far tail of the claimed distribution"]


def test_a_greedy_claim_needs_the_argmax_up_to_near_ties():
    logits = torch.tensor([[5.0, 1.0, 0.0], [2.0, 2.01, 0.0], [3.0, 0.0, 1.0]])
    assert _check(logits, torch.tensor([0, 0, 0]), temperature=0.0).outside_nucleus == 0
    assert _check(logits, torch.tensor([0, 0, 2]), temperature=0.0).outside_nucleus == 1


def _rollout(tokens: list[int], finish_reason: str, max_tokens: int = 8, stop: list[str] = ()) -> Rollout:
    return Rollout(
        prompt_token_ids=[1],
        token_ids=tokens,
        toploc_proofs=[],
        temperature=1.0,
        top_p=1.0,
        max_tokens=max_tokens,
        finish_reason=finish_reason,
        stop=list(stop),
    )


def _decode(ids: list[int]) -> str:
    return "".join(chr(ord("a") + t) for t in ids if t not in EOS)


@pytest.mark.parametrize(
    ("rollout", "context_full"),
    [
        (_rollout([5, 6, 2], "stop"), False),
        (_rollout([5, 6, 7], "stop", stop=["gh"]), False),
        (_rollout([5, 6, 7], "tool_calls", stop=["h"]), False),
        (_rollout([5] * 8, "length"), False),
        (_rollout([5] * 3, "length"), True),
    ],
)
def test_legitimate_ends_pass(rollout, context_full):
    assert termination_failures(rollout, EOS, _decode, context_full) == []


@pytest.mark.parametrize(
    ("rollout", "reason"),
    [
        (_rollout([5, 6, 7], "stop"), "neither EOS nor a stop string"),
        (_rollout([5, 6, 7], "stop", stop=["x"]), "neither EOS nor a stop string"),
        (_rollout([5] * 5, "length"), "after 5 of max_tokens=8"),
        (_rollout([5, 2, 6, 2], "stop"), "past EOS at token 1"),
        (_rollout([5, 6, 7, 8], "length", max_tokens=4, stop=["fg"]), "past a stop string"),
        (_rollout([5, 6], "abort"), "not a legitimate end"),
    ],
)
def test_sequences_cut_short_or_run_past_their_end_fail(rollout, reason):
    failures = termination_failures(rollout, EOS, _decode, context_full=False)
    assert any(reason in f for f in failures), failures
