"""Chunk checks: the same states pass exactly, rounding noise passes, other states fail."""

from __future__ import annotations

import base64

import torch

from asyncrl.toploc.builder import build_proofs
from asyncrl.toploc.chunk_check import check_chunks
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.proof import ChunkProof

CONFIG = ToplocConfig()


def _proofs_of(states: torch.Tensor) -> list[ChunkProof]:
    """Proofs of [n, H] states in chunks of 32, as the engine builds them."""
    n, width = states.shape
    chunks = -(-n // 32)
    padded = torch.zeros(chunks * 32, width)
    padded[:n] = states
    lengths = (n - torch.arange(chunks) * 32).clamp(max=32)
    raw = build_proofs(padded.view(chunks, 32, width), lengths, 128)
    return [ChunkProof.from_base64(base64.b64encode(p).decode()) for p in raw]


def _states(n: int = 70, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 128, generator=torch.Generator().manual_seed(seed))


def test_the_same_states_match_exactly():
    states = _states()
    checks = check_chunks([(_proofs_of(states), states)], 32, 128, CONFIG)[0]
    assert len(checks) == 3
    assert all(c.passed and c.exp_mismatches == 0 and c.mant_err_mean == 0 for c in checks)


def test_recomputation_noise_of_a_few_bf16_ulps_passes():
    states = _states()
    noise = 1 + 3 * 2**-8 * torch.randn(states.shape, generator=torch.Generator().manual_seed(1))
    checks = check_chunks([(_proofs_of(states), states * noise)], 32, 128, CONFIG)[0]
    assert all(c.passed for c in checks)
    assert max(c.mant_err_mean for c in checks) > 0


def test_other_states_fail_every_chunk():
    checks = check_chunks([(_proofs_of(_states(seed=0)), _states(seed=1))], 32, 128, CONFIG)[0]
    assert not any(c.passed for c in checks)
    assert min(c.exp_mismatches for c in checks) > CONFIG.max_exp_mismatches


def test_one_replaced_chunk_fails_alone():
    states = _states()
    forged = states.clone()
    forged[32:64] = _states(n=32, seed=2)
    checks = check_chunks([(_proofs_of(states), forged)], 32, 128, CONFIG)[0]
    assert [c.passed for c in checks] == [True, False, True]


def test_sequences_checked_together_get_the_verdicts_each_gets_alone():
    honest, short = _states(n=70, seed=3), _states(n=5, seed=4)
    forged = honest.clone()
    forged[40:] = _states(n=30, seed=5)
    sequences = [(_proofs_of(honest), forged), (_proofs_of(short), short), (_proofs_of(honest), honest)]
    together = check_chunks(sequences, 32, 128, CONFIG)
    assert together == [check_chunks([sequence], 32, 128, CONFIG)[0] for sequence in sequences]
    assert [[c.passed for c in checks] for checks in together] == [[True, False, False], [True], [True] * 3]


def test_thresholds_come_from_the_config():
    states = _states()
    noise = 1 + 3 * 2**-8 * torch.randn(states.shape, generator=torch.Generator().manual_seed(1))
    strict = ToplocConfig(max_exp_mismatches=0, max_mant_err_mean=0.0, max_mant_err_median=0.0)
    assert not any(c.passed for c in check_chunks([(_proofs_of(states), states * noise)], 32, 128, strict)[0])
