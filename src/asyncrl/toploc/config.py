"""Config of TOPLOC proofs and their checks (asyncrl.toploc)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from asyncrl.config import ModelConfig
from asyncrl.config_loader import BaseConfig


class ProofConfig(BaseConfig):
    """How the engine builds TOPLOC proofs (`[inference.toploc]`); each proof records its chunk size and
    top-k, so a verifier always checks it with the settings it was built with."""

    @model_validator(mode="before")
    @classmethod
    def _from_flag(cls, value: Any) -> Any:
        """`inference.toploc = true` is short for `inference.toploc.enabled = true`."""
        return {"enabled": value} if isinstance(value, bool) else value

    enabled: bool = False
    """Prove every generation (a request can also ask with `"toploc": true`); each choice then carries
    `toploc_proofs`, one per chunk_size tokens. Torch backend only."""

    chunk_size: int = Field(32, ge=1, le=65535)
    """Generated tokens covered by one proof."""

    top_k: int = Field(128, ge=1)
    """Last-hidden-state values (largest magnitudes) one proof commits to; at most the hidden size."""


class ToplocConfig(BaseConfig):
    """The checks of TOPLOC proofs and of the sampling behind them."""

    chunk_size: int | None = Field(None, ge=1)
    """The chunk size the proofs must have been built with (default: the one they record); proofs built
    with another are an error, not a failed rollout."""

    top_k: int | None = Field(None, ge=1)
    """The top-k the proofs must commit to (default: the one they record); proofs built with another are
    an error."""

    max_exp_mismatches: int = Field(38, ge=0)
    """A chunk fails when more of its top-k values than this differ in sign or exponent from the
    recomputed ones (the paper's threshold: at least 90 of 128 must match)."""

    max_mant_err_mean: float = Field(10.0, ge=0)
    """A chunk fails when the mean difference of the bfloat16 mantissas, where exponents match, exceeds
    this (in units of the mantissa's last bit)."""

    max_mant_err_median: float = Field(8.0, ge=0)
    """A chunk fails when the median mantissa difference exceeds this."""

    max_sampling_z: float = Field(5.0, gt=0)
    """A rollout fails when its tokens' mid-ranks in the claimed sampling distributions stray from uniform
    by more than this many standard deviations (sampled at another temperature or top_p than claimed)."""

    min_token_tail: float = Field(1e-9, ge=0, lt=1)
    """A rollout fails when one of its tokens is so unlikely at the claimed temperature that the tokens at
    most as likely as it hold less than this much probability: an honest sampler draws such a token with
    probability below this (divided by top_p), per token."""

    top_p_slack: float = Field(0.02, ge=0)
    """A token is outside the claimed nucleus when the tokens more likely than it hold more mass than top_p
    plus this (which absorbs precision differences between generator and verifier)."""

    greedy_slack: float = Field(0.05, ge=0)
    """At temperature 0, a token fails when its logprob is below the most likely token's by more than this
    (nats), which absorbs near-ties that another precision may order differently."""


class VerifyCommandConfig(BaseConfig):
    """`asyncrl toploc verify`: check the TOPLOC proofs, sampling and endings of a rollouts file against the
    model the rollouts claim to come from."""

    rollouts: Path | None = None
    """JSON lines file, one rollout a line: prompt_token_ids, token_ids, toploc_proofs, temperature, top_p,
    max_tokens, finish_reason (and optionally the request's stop strings, stop)."""

    model: ModelConfig = ModelConfig()
    """The claimed model (required): `--model DIR` (or `tiny`); model.dtype is the precision of the
    recomputation."""

    toploc: ToplocConfig = ToplocConfig()
    """Chunk size and top-k of the proofs, and the thresholds of the checks."""
