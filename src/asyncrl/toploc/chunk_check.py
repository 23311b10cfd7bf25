"""Comparing chunk proofs with recomputed hidden states, token by token.

For each generated token the verifier takes the largest values of the state that produced it, as the
prover did, and reads the claimed values off the proof polynomial at the points those dimensions and that
token hash to. Where the prover's state, dimensions and token were the same, the claimed values come
back; a token that differs, or a dimension outside the prover's top set, reads back a pseudo-random field
element.

Values are compared as distances in bfloat16 units in the last place (ulps: bit patterns ordered by value,
so 1.0 and the float below it are 1 apart). Two of a state's largest magnitudes can nearly tie, or (in
bfloat16) tie exactly, so the prover may have committed a dimension the verifier ranks just below its own
top set: the verifier reads `extra_dims` more candidates than the prover committed, and a position
passes when at least per_position - max_missing of them lie within max_ulps of the claimed values. A
chunk fails when any of its positions does. The tolerances depend on how the prover and the verifier
computed (`TOLERANCES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.proof import ChunkProof, Precision, claimed_bits, position_top_k


@dataclass(frozen=True)
class Tolerance:
    max_ulps: int
    """How far (bfloat16 ulps) a recomputed value may be from the claimed one."""
    extra_dims: int
    """Candidate dimensions read beyond the prover's per_position, for near-ties in the ranking."""
    max_missing: int
    """Committed values of one position allowed to find no match."""


SAME = Tolerance(max_ulps=1, extra_dims=1, max_missing=0)
"""Prover and verifier both computed in float32 on one kind of device: states agree up to reduction
order, which may round a value to the neighbouring bfloat16 or swap two nearly tied magnitudes. Two bf16
computations are not alike in this sense: the engine's fused path and transformers' round differently in
every layer (2 ulps seen on the CPU, benchmarks/gpu_check.py --dry), so they get the measured bf16 one."""

TOLERANCES: dict[frozenset[Precision], Tolerance] = {
    frozenset({("bfloat16", "cpu"), ("float32", "cpu")}): Tolerance(max_ulps=6, extra_dims=2, max_missing=1),
}
"""Measured honest distributions between precisions (benchmarks/toploc_tamper.py); a pair not listed
gets the loosest one measured."""


def tolerance_for(prover: Precision, verifier: Precision, config: ToplocConfig) -> Tolerance:
    """The tolerance of proofs built in `prover` precision checked in `verifier` precision, with the
    config's overrides."""
    if prover == verifier and prover[0] == "float32":
        measured = SAME
    else:
        loosest = max(TOLERANCES.values(), key=lambda t: (t.max_ulps, t.extra_dims, t.max_missing))
        measured = TOLERANCES.get(frozenset({prover, verifier}), loosest)
    return Tolerance(
        config.max_ulps if config.max_ulps is not None else measured.max_ulps,
        measured.extra_dims,
        config.max_missing if config.max_missing is not None else measured.max_missing,
    )


@dataclass(frozen=True)
class ChunkCheck:
    bad_positions: int
    """Tokens whose committed values do not match."""
    worst_ulps: int
    """The worst position's distance: within it, enough of its values match."""
    median_ulps: float
    """The median position's distance."""
    passed: bool


def check_chunks(
    sequences: list[tuple[list[ChunkProof], torch.Tensor, list[int]]],
    verifier: Precision,
    config: ToplocConfig,
) -> list[list[ChunkCheck]]:
    """Check each sequence's `proofs`, one per chunk of generated tokens, against the recomputed last
    hidden states [n, H] that produced its n `tokens`. All chunks of all sequences go through one top-k
    and one polynomial evaluation, whose fixed costs dwarf a single chunk's."""
    proofs = [p for ps, _, _ in sequences for p in ps]
    if not proofs:
        return [[] for _ in sequences]
    size, per_position = proofs[0].chunk_size, proofs[0].per_position
    width = sequences[0][1].shape[1]
    states = torch.zeros(len(proofs), size, width, dtype=sequences[0][1].dtype)
    tokens = np.zeros((len(proofs), size), dtype=np.int64)
    lengths = np.zeros(len(proofs), dtype=np.int64)
    first = 0
    for chunks, hidden, ids in sequences:
        states.view(-1, width)[first * size : first * size + len(hidden)] = hidden
        tokens.reshape(-1)[first * size : first * size + len(ids)] = ids
        lengths[first : first + len(chunks)] = np.clip(len(ids) - np.arange(len(chunks)) * size, 0, size)
        first += len(chunks)
    tolerances = [tolerance_for(p.precision, verifier, config) for p in proofs]
    candidates = min(per_position + max(t.extra_dims for t in tolerances), width)
    dims, bits = position_top_k(states, candidates)
    claimed = claimed_bits(proofs, dims.numpy(), tokens).astype(np.int64)
    distance = np.abs(_ordered(bits.numpy()) - _ordered(claimed))
    checks = [
        _judge(d[:n, : per_position + t.extra_dims], per_position - t.max_missing, t.max_ulps)
        for d, n, t in zip(distance, lengths.tolist(), tolerances, strict=True)
    ]
    bounds = np.cumsum([0, *(len(ps) for ps, _, _ in sequences)])
    return [checks[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def _ordered(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns as integers in the order of their values (-0 and +0 both 0)."""
    magnitude = bits & 0x7FFF
    return np.where(bits & 0x8000, -magnitude, magnitude)


def _judge(distance: np.ndarray, matches: int, max_ulps: int) -> ChunkCheck:
    """The check of one chunk from its candidates' distances [n, candidates]: each position needs
    `matches` of them within max_ulps."""
    needed = min(max(matches, 1), distance.shape[1]) - 1
    scores = np.partition(distance, needed, axis=1)[:, needed]
    bad = int((scores > max_ulps).sum())
    return ChunkCheck(bad, int(scores.max()), float(np.median(scores)), bad == 0)
