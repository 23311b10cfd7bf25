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
    """Last-hidden-state values one proof of chunk_size tokens commits to: top_k // chunk_size per token
    (each token's largest magnitudes, at most the hidden size), so at least chunk_size."""

    @model_validator(mode="after")
    def _every_token_commits(self) -> ProofConfig:
        if self.top_k < self.chunk_size:
            raise ValueError(
                f"top_k {self.top_k} < chunk_size {self.chunk_size}: every token must commit at least one "
                "value (top_k // chunk_size each); raise top_k or lower chunk_size"
            )
        if self.top_k // self.chunk_size > 255:
            raise ValueError("top_k // chunk_size is at most 255 values per token; lower top_k")
        return self

    @property
    def per_position(self) -> int:
        return self.top_k // self.chunk_size


class ToplocConfig(BaseConfig):
    """The checks of TOPLOC proofs and of the sampling behind them."""

    chunk_size: int | None = Field(None, ge=1)
    """The chunk size the proofs must have been built with (default: the one they record); proofs built
    with another are an error, not a failed rollout."""

    top_k: int | None = Field(None, ge=1)
    """The top-k the proofs must commit to (default: the one they record); proofs built with another are
    an error."""

    max_ulps: int | None = Field(None, ge=0)
    """How far (bfloat16 units in the last place) a recomputed hidden-state value may be from the one a
    proof claims (default: measured for the prover's precision, which the proof records, and the
    verifier's; 1 when they are the same)."""

    max_missing: int | None = Field(None, ge=0)
    """Committed values of one token allowed to match none of the recomputed ones (default: measured, as
    max_ulps; 0 for the same precision); a token with more fails its chunk."""

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
