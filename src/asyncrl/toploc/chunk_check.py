"""Comparing chunk proofs with recomputed hidden states: the paper's exponent and mantissa tests.

The verifier takes the top-k of its own recomputed states and reads the generator's claimed values at
those indices off the proof polynomial. An index outside the generator's top-k reads back noise, so the
count of sign/exponent mismatches measures both how much the top-k sets differ and how far the values
moved; where sign and exponent match, the bfloat16 mantissas (7 bits) must be close on average.
Recomputation in another precision or kernel order moves mantissas by a few units; another model,
prompt or token moves the top-k set itself.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
import torch

from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.proof import ChunkProof, chunk_top_k, claimed_bits

MANTISSA_BITS = 7


@dataclass(frozen=True)
class ChunkCheck:
    exp_mismatches: int
    """Top-k values whose sign or exponent differs from the claimed ones."""
    mant_err_mean: float
    """Mean absolute difference of the mantissas (units of the last bfloat16 bit) where exponents match."""
    mant_err_median: float
    passed: bool


def check_chunks(
    sequences: list[tuple[list[ChunkProof], torch.Tensor]], size: int, top_k: int, config: ToplocConfig
) -> list[list[ChunkCheck]]:
    """Check each sequence's `proofs`, one per `size` tokens, against the recomputed last hidden states
    [n, H] of those tokens. All chunks of all sequences go through one top-k and one polynomial
    evaluation, whose fixed costs dwarf a single chunk's."""
    chunks = sum(len(proofs) for proofs, _ in sequences)
    width = sequences[0][1].shape[1] if sequences else 0
    padded = torch.zeros(chunks, size, width, dtype=sequences[0][1].dtype if sequences else torch.float32)
    lengths, first = [], 0
    for proofs, hidden in sequences:
        padded.view(-1, width)[first * size : first * size + len(hidden)] = hidden
        lengths.append((len(hidden) - torch.arange(len(proofs)) * size).clamp(max=size))
        first += len(proofs)
    if not chunks:
        return [[] for _ in sequences]
    indices, bits = chunk_top_k(padded, torch.cat(lengths), top_k)
    claimed = claimed_bits([p for proofs, _ in sequences for p in proofs], indices.numpy()).astype(np.int64)
    checks = [_compare(mine, theirs, config) for mine, theirs in zip(bits.numpy(), claimed, strict=True)]
    bounds = np.cumsum([0, *(len(proofs) for proofs, _ in sequences)])
    return [checks[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def _compare(recomputed: np.ndarray, claimed: np.ndarray, config: ToplocConfig) -> ChunkCheck:
    same_exponent = (recomputed >> MANTISSA_BITS) == (claimed >> MANTISSA_BITS)
    mask = (1 << MANTISSA_BITS) - 1
    errors = np.abs((recomputed & mask) - (claimed & mask))[same_exponent].tolist()
    mismatches = int((~same_exponent).sum())
    mean = statistics.fmean(errors) if errors else float("inf")
    median = float(statistics.median(errors)) if errors else float("inf")
    passed = (
        mismatches <= config.max_exp_mismatches
        and mean <= config.max_mant_err_mean
        and median <= config.max_mant_err_median
    )
    return ChunkCheck(mismatches, mean, median, passed)
