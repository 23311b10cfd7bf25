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

from asyncrl.config import ToplocConfig
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
    proofs: list[ChunkProof], hidden: torch.Tensor, top_k: int, config: ToplocConfig
) -> list[ChunkCheck]:
    """Check `proofs`, one per `config.chunk_size` tokens, against the recomputed last hidden states
    `hidden` [n, H] of those tokens."""
    n, width = hidden.shape
    size = config.chunk_size
    padded = torch.zeros(len(proofs) * size, width, dtype=hidden.dtype)
    padded[:n] = hidden
    lengths = (n - torch.arange(len(proofs)) * size).clamp(max=size)
    indices, bits = chunk_top_k(padded.view(len(proofs), size, width), lengths, top_k)
    claimed = claimed_bits(proofs, indices.numpy()).astype(np.int64)
    return [_compare(mine, theirs, config) for mine, theirs in zip(bits.numpy(), claimed, strict=True)]


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
