"""Chunk checks: the same states and tokens pass exactly, precision noise passes where the tolerances
allow it, other states or one other token fail, and the tolerance follows the prover's precision."""

from __future__ import annotations

import base64

import torch

from asyncrl.toploc.builder import build_proofs
from asyncrl.toploc.chunk_check import SAME, TOLERANCES, check_chunks, tolerance_for
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.proof import ChunkProof

CONFIG = ToplocConfig()
FP32 = ("float32", "cpu")
BF16 = ("bfloat16", "cpu")


def _proofs_of(states: torch.Tensor, tokens: list[int], precision=FP32) -> list[ChunkProof]:
    """Proofs of [n, H] states that produced `tokens`, in chunks of 32, as the engine builds them."""
    n, width = states.shape
    chunks = -(-n // 32)
    padded = torch.zeros(chunks * 32, width)
    padded[:n] = states
    ids = torch.zeros(chunks * 32, dtype=torch.long)
    ids[:n] = torch.tensor(tokens)
    lengths = (n - torch.arange(chunks) * 32).clamp(max=32)
    raw = build_proofs(padded.view(chunks, 32, width), ids.view(chunks, 32), lengths, 4, precision)
    return [ChunkProof.from_base64(base64.b64encode(p).decode()) for p in raw]


def _states(n: int = 70, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 128, generator=torch.Generator().manual_seed(seed))


def _tokens(n: int = 70, seed: int = 0) -> list[int]:
    return torch.randint(0, 260, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _check(proofs, states, tokens, verifier=FP32, config=CONFIG):
    return check_chunks([(proofs, states, tokens)], verifier, config)[0]


def test_the_same_states_and_tokens_match_exactly():
    states, tokens = _states(), _tokens()
    checks = _check(_proofs_of(states, tokens), states, tokens)
    assert len(checks) == 3
    assert all(c.passed and c.bad_positions == 0 and c.worst_ulps == 0 for c in checks)


def test_one_other_token_at_any_position_fails_its_chunk():
    states, tokens = _states(), _tokens()
    proofs = _proofs_of(states, tokens)
    for position in range(70):
        forged = list(tokens)
        forged[position] = (forged[position] + 1) % 260
        checks = _check(proofs, states, forged)
        assert [c.passed for c in checks] == [i != position // 32 for i in range(3)], position
        assert checks[position // 32].bad_positions == 1


def test_noise_of_a_few_bf16_ulps_passes_across_precisions_and_fails_within_one():
    states, tokens = _states(), _tokens()
    noise = 1 + 2 * 2**-8 * torch.randn(states.shape, generator=torch.Generator().manual_seed(1))
    across = _check(_proofs_of(states, tokens, BF16), states * noise, tokens)
    assert all(c.passed for c in across) and max(c.worst_ulps for c in across) > 0
    within = _check(_proofs_of(states, tokens, FP32), states * noise, tokens)
    assert not any(c.passed for c in within)


def test_other_states_fail_every_chunk():
    tokens = _tokens()
    checks = _check(_proofs_of(_states(seed=0), tokens, BF16), _states(seed=1), tokens)
    assert not any(c.passed for c in checks)
    assert min(c.bad_positions for c in checks) > 1


def test_one_replaced_chunk_fails_alone():
    states, tokens = _states(), _tokens()
    forged = states.clone()
    forged[32:64] = _states(n=32, seed=2)
    assert [c.passed for c in _check(_proofs_of(states, tokens), forged, tokens)] == [True, False, True]


def test_sequences_checked_together_get_the_verdicts_each_gets_alone():
    honest, short = _states(n=70, seed=3), _states(n=5, seed=4)
    ids, short_ids = _tokens(70, 3), _tokens(5, 4)
    forged = honest.clone()
    forged[40:] = _states(n=30, seed=5)
    sequences = [
        (_proofs_of(honest, ids), forged, ids),
        (_proofs_of(short, short_ids, BF16), short, short_ids),
        (_proofs_of(honest, ids), honest, ids),
    ]
    together = check_chunks(sequences, FP32, CONFIG)
    assert together == [check_chunks([sequence], FP32, CONFIG)[0] for sequence in sequences]
    assert [[c.passed for c in checks] for checks in together] == [[True, False, False], [True], [True] * 3]


def test_the_tolerance_follows_the_precision_pair_and_the_config_overrides_it():
    assert tolerance_for(FP32, FP32, CONFIG) == SAME
    measured = TOLERANCES[frozenset({BF16, FP32})]
    assert tolerance_for(BF16, FP32, CONFIG) == tolerance_for(FP32, BF16, CONFIG) == measured
    unmeasured = tolerance_for(("float16", "cuda"), FP32, CONFIG)
    assert unmeasured.max_ulps >= measured.max_ulps  # the loosest measured
    strict = ToplocConfig(max_ulps=0, max_missing=0)
    assert (tolerance_for(BF16, FP32, strict).max_ulps, tolerance_for(BF16, FP32, strict).max_missing) == (
        0,
        0,
    )
    states, tokens = _states(), _tokens()
    noise = 1 + 2 * 2**-8 * torch.randn(states.shape, generator=torch.Generator().manual_seed(1))
    assert not any(
        c.passed for c in _check(_proofs_of(states, tokens, BF16), states * noise, tokens, config=strict)
    )
