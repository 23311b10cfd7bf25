"""Verifying rollouts against the model they claim to come from.

One prefill pass over prompt + generated tokens (all but the last, which produced nothing) recomputes,
at once, the last hidden state and the logits behind every generated token: the hidden states go to the
TOPLOC chunk checks, the logits to the sampling checks. Rollouts are batched by length, right-padded
(causal attention never lets a real position see the padding after it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from asyncrl.models import DTYPES, eos_token_ids, load_model, load_tokenizer, resolve_model_path
from asyncrl.toploc.chunk_check import ChunkCheck, check_chunks
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.errors import ProofFormatError, ProofSettingsError
from asyncrl.toploc.proof import ChunkProof, Precision
from asyncrl.toploc.rollouts import Rollout
from asyncrl.toploc.sampling_checks import (
    SamplingCheck,
    SamplingStats,
    sampling_failures,
    termination_failures,
)

BATCH_TOKENS = 8192
"""Padded tokens per verification forward pass."""

LOGITS_ROWS = 256
"""Generated positions whose [rows, vocab] logits are held at once."""


class _Unverifiable(Exception):
    """The rollout cannot even be recomputed or compared (the message says why); it fails."""


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]
    """Why the rollout fails; empty when it passes."""
    chunks: tuple[ChunkCheck, ...] = ()
    """The TOPLOC statistics of each chunk (empty when the rollout was rejected before recomputing)."""
    sampling: SamplingCheck | None = None


@dataclass
class ReferenceModel:
    """The model rollouts claim to come from, with what the checks need besides its weights."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    eos_token_ids: tuple[int, ...]

    @classmethod
    def load(cls, path: str, dtype: str = "float32", device: str = "cpu") -> ReferenceModel:
        """Load a model dir (or `tiny`) to verify with, in `dtype` on `device`."""
        tokenizer = load_tokenizer(path)
        eos = eos_token_ids(resolve_model_path(path), tokenizer)
        return cls(load_model(path, DTYPES[dtype]).to(device), tokenizer, eos)

    @property
    def context_len(self) -> int:
        return self.model.config.max_position_embeddings

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def precision(self) -> Precision:
        """How this model computes the states it checks: (dtype, device type)."""
        weight = next(self.model.parameters())
        return str(weight.dtype).removeprefix("torch."), weight.device.type


def verify_rollouts(
    reference: ReferenceModel, rollouts: Sequence[Rollout], config: ToplocConfig
) -> list[Verdict]:
    """A verdict per rollout: its proofs match the model's recomputed hidden states, its tokens are
    plausible at its claimed temperature and top-p, and it ended legitimately. The proofs are checked with
    the chunk size and top-k they record; ProofSettingsError when `config` names others."""
    verdicts: list[Verdict | None] = [None] * len(rollouts)
    proofs: dict[int, list[ChunkProof]] = {}
    for i, rollout in enumerate(rollouts):
        try:
            proofs[i] = _parse_proofs(rollout, reference)
        except _Unverifiable as e:
            verdicts[i] = Verdict(False, (str(e),))
    chunk_size = _settings([p for parsed in proofs.values() for p in parsed[:1]], config)
    for i in list(proofs):
        expected = math.ceil(len(rollouts[i].token_ids) / chunk_size)
        if len(proofs[i]) != expected:
            tokens = len(rollouts[i].token_ids)
            problem = (
                f"{len(proofs[i])} proofs for {tokens} tokens; expected {expected} (one per {chunk_size})"
            )
            verdicts[i] = Verdict(False, (problem,))
            del proofs[i]
    with torch.inference_mode():
        for batch in _batches(rollouts, list(proofs)):
            hidden = _last_hidden_states(reference.model, [rollouts[i] for i in batch])
            states = []
            for row, i in enumerate(batch):
                start = len(rollouts[i].prompt_token_ids) - 1
                states.append(hidden[row, start : start + len(rollouts[i].token_ids)])
            sequences = [(proofs[i], s, rollouts[i].token_ids) for i, s in zip(batch, states, strict=True)]
            chunks = check_chunks(sequences, reference.precision, config)
            for i, checks, generated in zip(batch, chunks, states, strict=True):
                verdicts[i] = _judge(rollouts[i], checks, generated, reference, config)
    return verdicts  # type: ignore[return-value]


def _settings(firsts: list[ChunkProof], config: ToplocConfig) -> int:
    """The chunk size every rollout's proofs were built with, once they agree with each other and with
    config on chunk size and top-k (one proof of each rollout is enough: a rollout's own proofs agree,
    `_parse_proofs` checked); config's defaults where there are none."""
    recorded = {(p.chunk_size, p.top_k) for p in firsts}
    if len(recorded) > 1:
        listed = ", ".join(f"chunk_size {c} and top_k {k}" for c, k in sorted(recorded))
        raise ProofSettingsError(f"these rollouts' proofs were built with different settings ({listed}); "
                                 "verify each kind separately")  # fmt: skip
    chunk_size, top_k = recorded.pop() if recorded else (config.chunk_size or 1, config.top_k or 1)
    for name, wanted, built in (
        ("chunk_size", config.chunk_size, chunk_size),
        ("top_k", config.top_k, top_k),
    ):
        if wanted is not None and wanted != built:
            raise ProofSettingsError(
                f"the proofs were built with {name} {built}, not the {wanted} asked for: verify with "
                f"--toploc.{name.replace('_', '-')} {built}, or leave it out to use what the proofs record"
            )
    return chunk_size


def _parse_proofs(rollout: Rollout, reference: ReferenceModel) -> list[ChunkProof]:
    """The rollout's proofs, or _Unverifiable saying why it cannot be checked at all."""
    vocab = reference.model.config.vocab_size
    bad = [t for t in (*rollout.prompt_token_ids, *rollout.token_ids) if not 0 <= t < vocab]
    if bad:
        raise _Unverifiable(f"token id {bad[0]} is outside the model's vocabulary [0, {vocab})")
    if _length(rollout) > reference.context_len:
        raise _Unverifiable(
            f"{_length(rollout)} tokens exceed the model's context of {reference.context_len}"
        )
    proofs = []
    for chunk, text in enumerate(rollout.toploc_proofs):
        try:
            proof = ChunkProof.from_base64(text)
        except ProofFormatError as e:
            raise _Unverifiable(f"proof of chunk {chunk}: {e}") from None
        if proof.per_position > reference.hidden_size:
            raise _Unverifiable(
                f"proof of chunk {chunk} commits to {proof.per_position} values per token, more than the "
                f"hidden size {reference.hidden_size}"
            )
        settings = (proof.chunk_size, proof.top_k, proof.precision)
        if proofs and settings != (proofs[0].chunk_size, proofs[0].top_k, proofs[0].precision):
            raise _Unverifiable(f"proof of chunk {chunk} was built with other settings than chunk 0's")
        proofs.append(proof)
    return proofs


def _length(rollout: Rollout) -> int:
    """Tokens of the verification pass: the last generated token is never fed to the model."""
    return len(rollout.prompt_token_ids) + len(rollout.token_ids) - 1


def _batches(rollouts: Sequence[Rollout], indices: list[int]) -> list[list[int]]:
    """`indices` grouped, shortest first, so each batch's rows x longest stays within BATCH_TOKENS."""
    batches: list[list[int]] = []
    for i in sorted(indices, key=lambda i: _length(rollouts[i])):
        if batches and (len(batches[-1]) + 1) * _length(rollouts[i]) <= BATCH_TOKENS:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _last_hidden_states(model: PreTrainedModel, rollouts: list[Rollout]) -> torch.Tensor:
    width = max(_length(r) for r in rollouts)
    tokens = torch.zeros(len(rollouts), width, dtype=torch.long)
    for row, rollout in enumerate(rollouts):
        ids = [*rollout.prompt_token_ids, *rollout.token_ids[:-1]]
        tokens[row, : len(ids)] = torch.tensor(ids)
    # The checks index the states with the proofs' host tensors: bring them back in their own dtype.
    return model.base_model(input_ids=tokens.to(model.device)).last_hidden_state.cpu()


def _judge(
    rollout: Rollout,
    chunks: list[ChunkCheck],
    states: torch.Tensor,
    reference: ReferenceModel,
    config: ToplocConfig,
) -> Verdict:
    reasons = []
    failed = [str(i) for i, chunk in enumerate(chunks) if not chunk.passed]
    if failed:
        reasons.append(
            f"TOPLOC: chunk(s) {', '.join(failed)} of {len(chunks)} do not match the model's hidden states"
        )
    stats = SamplingStats()
    lm_head = reference.model.get_output_embeddings()
    tokens = torch.tensor(rollout.token_ids)
    for start in range(0, len(tokens), LOGITS_ROWS):
        logits = lm_head(states[start : start + LOGITS_ROWS])
        stats.add(logits, tokens[start : start + LOGITS_ROWS], rollout.temperature, rollout.top_p, config)
    sampling = stats.result()
    reasons += sampling_failures(sampling, config)

    def decode(ids: list[int]) -> str:
        return reference.tokenizer.decode(ids, skip_special_tokens=True)

    context_full = _length(rollout) + 1 >= reference.context_len
    reasons += termination_failures(rollout, reference.eos_token_ids, decode, context_full)
    return Verdict(not reasons, tuple(reasons), tuple(chunks), sampling)
