"""The checks INTELLECT-2 put around TOPLOC: tokens sampled as claimed, and a legitimate end.

TOPLOC proves the hidden states; it says nothing of how tokens were drawn from them, and the last token
is never fed back, so no proof covers it. These checks use the verifier's logits of every generated
token, from the same prefill pass.

Sampling: under the claimed temperature and top-p, each token has a mid-rank u = (mass of more likely
tokens) + half its own mass. For honest draws u has mean 1/2 and variance (1 - sum q^3) / 12, exactly,
whatever the distribution, and is bounded, so the standardised sum over a rollout has light tails (the
plain log-likelihood does not: an honest rare draw at a confident step moves it by tens of standard
deviations). Sampling colder than claimed pushes u down, hotter pushes it up. A token outside the
claimed nucleus fails on its own, and so does one from the far tail: when the tokens at most as likely
as it hold mass below a bound, an honest draw lands there with probability below that bound, whatever
the vocabulary. At temperature 0 every token must be the argmax.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from asyncrl.distributions import GREEDY_BELOW, nucleus_logprobs
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.rollouts import Rollout

LEGITIMATE_STOPS = ("stop", "tool_calls")
"""Finish reasons of a sequence that ended on EOS or a stop string (`tool_calls` is a chat rendering of
"stop")."""


@dataclass(frozen=True)
class SamplingCheck:
    z: float
    """Standardised deviation of the tokens' mid-ranks from uniform (0 for greedy rollouts)."""
    outside_nucleus: int
    """Tokens the claimed top-p (plus slack) excludes; at temperature 0, tokens that are not the argmax."""
    unlikely: int
    """Tokens in the far tail of the claimed distribution (see toploc.min_token_tail)."""


@dataclass
class SamplingStats:
    """Running sums over a rollout's tokens, fed slice by slice so [tokens, vocab] never grows large."""

    deviation: float = 0.0
    variance: float = 0.0
    outside_nucleus: int = 0
    unlikely: int = 0

    def add(
        self,
        logits: torch.Tensor,
        token_ids: torch.Tensor,
        temperature: float,
        top_p: float,
        config: ToplocConfig,
    ) -> None:
        """Account for tokens `token_ids` [n] drawn from `logits` [n, V]."""
        logits = logits.float()
        chosen = token_ids.unsqueeze(1)
        if temperature < GREEDY_BELOW:
            logprobs = logits.log_softmax(dim=-1)
            gap = logprobs.max(dim=-1).values - logprobs.gather(1, chosen).squeeze(1)
            self.outside_nucleus += int((gap > config.greedy_slack).sum())
            return
        logprobs = (logits / temperature).log_softmax(dim=-1)
        probs = logprobs.exp()
        chosen_prob = probs.gather(1, chosen)
        more_likely = probs > chosen_prob
        mass_before = (probs * more_likely).sum(dim=-1)
        self.outside_nucleus += int((mass_before >= top_p + config.top_p_slack).sum())
        # Summed directly, not as 1 - mass_before, which float32 cannot resolve below ~1e-7.
        tail = (probs * ~more_likely).sum(dim=-1)
        self.unlikely += int((tail < config.min_token_tail).sum())

        nucleus = probs
        if top_p < 1:
            nucleus = nucleus_logprobs(logprobs, torch.full((len(logits),), top_p)).exp()
        # A token just past the nucleus edge (within the slack) has every nucleus token above it: rank 1.
        ties = (probs == chosen_prob) & (nucleus > 0)
        mid_rank = (nucleus * more_likely).sum(dim=-1) + 0.5 * (nucleus * ties).sum(dim=-1)
        self.deviation += float((mid_rank - 0.5).sum())
        self.variance += float(((1 - nucleus.pow(3).sum(dim=-1)) / 12).sum())

    def result(self) -> SamplingCheck:
        z = self.deviation / math.sqrt(self.variance) if self.variance > 1e-12 else 0.0
        return SamplingCheck(z, self.outside_nucleus, self.unlikely)


def sampling_failures(check: SamplingCheck, config: ToplocConfig) -> list[str]:
    """Why the sampling check fails, or nothing when it passes."""
    reasons = []
    if check.outside_nucleus:
        reasons.append(
            f"{check.outside_nucleus} token(s) could not have been sampled at the claimed settings"
        )
    if check.unlikely:
        reasons.append(f"{check.unlikely} token(s) from the far tail of the claimed distribution")
    if abs(check.z) > config.max_sampling_z:
        side = "colder" if check.z < 0 else "hotter"
        reasons.append(f"tokens look sampled {side} than claimed (z = {check.z:+.1f})")
    return reasons


def termination_failures(
    rollout: Rollout, eos_token_ids: Sequence[int], decode: Callable[[list[int]], str], context_full: bool
) -> list[str]:
    """Why the rollout did not end legitimately (EOS, a stop string, or the length limit), or nothing.
    `decode` turns token ids into text as the engine does for stop strings; `context_full` is whether
    prompt and completion fill the model's context window."""
    tokens, stop, reason = rollout.token_ids, rollout.stop, rollout.finish_reason
    failures = []
    past_eos = [i for i, t in enumerate(tokens[:-1]) if t in eos_token_ids]
    if past_eos:
        failures.append(f"generation went on past EOS at token {past_eos[0]}")
    if stop and any(s in decode(tokens[:-1]) for s in stop):
        failures.append("generation went on past a stop string")
    if reason in LEGITIMATE_STOPS:
        on_stop_string = bool(stop) and any(s in decode(tokens) for s in stop)
        if tokens[-1] not in eos_token_ids and not on_stop_string:
            failures.append(f"finish_reason {reason!r} but the last token is neither EOS nor a stop string")
    elif reason == "length":
        if len(tokens) != rollout.max_tokens and not context_full:
            failures.append(
                f"finish_reason 'length' after {len(tokens)} of max_tokens={rollout.max_tokens} tokens"
            )
    else:
        failures.append(f"finish_reason {reason!r} is not a legitimate end (stop, or length)")
    return failures
