"""Chunk proofs: 260 bytes for 32 tokens x 4 values, recording their chunk size, values per token and the
prover's precision; the committed values read back only at their dimensions and with their tokens."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
import torch

from asyncrl.toploc.builder import build_proofs
from asyncrl.toploc.errors import ProofBuildError, ProofFormatError
from asyncrl.toploc.proof import PAD_TOKEN, ChunkProof, bf16_bits, claimed_bits, points, position_top_k


def _states(rows: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, 32, 128, generator=torch.Generator().manual_seed(seed))


def _tokens(rows: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 260, (rows, 32), generator=torch.Generator().manual_seed(seed))


def _proofs(states, tokens, lengths, precision=("float32", "cpu")) -> list[ChunkProof]:
    raw = build_proofs(states, tokens, lengths, 4, precision)
    return [ChunkProof.from_base64(base64.b64encode(p).decode()) for p in raw]


def test_a_proof_of_32_tokens_takes_260_bytes_and_records_its_settings():
    raw = build_proofs(_states(), _tokens(), torch.tensor([32, 32, 5]), 4, ("bfloat16", "cuda"))
    # 2-byte chunk size, 1-byte values per token, 1 byte of precision and salt, 128 2-byte coefficients
    assert [len(p) for p in raw] == [260, 260, 260]
    parsed = ChunkProof.from_base64(base64.b64encode(raw[2]).decode())
    assert (parsed.chunk_size, parsed.per_position, parsed.top_k) == (32, 4, 128)
    assert parsed.precision == ("bfloat16", "cuda")


def test_a_precision_a_proof_cannot_record_is_refused_naming_those_it_can():
    with pytest.raises(ProofBuildError, match=r"not \('float32', 'mps'\)"):
        build_proofs(_states(), _tokens(), torch.tensor([32, 32, 5]), 4, ("float32", "mps"))


def test_the_proof_reads_back_each_tokens_top_values_at_its_dimensions():
    states, tokens, lengths = _states(), _tokens(), torch.tensor([32, 20, 1])
    proofs = _proofs(states, tokens, lengths)
    dims, bits = position_top_k(states, 4)
    claimed = claimed_bits(proofs, dims.numpy(), tokens.numpy())
    for row, length in enumerate(lengths.tolist()):
        assert (claimed[row, :length] == bits[row, :length].numpy()).all()


def test_each_position_commits_its_own_largest_magnitudes():
    states = _states(rows=1)
    states[0, 3, 7] = 100.0  # one outlier must not take other positions' places
    dims, bits = position_top_k(states, 4)
    assert dims.shape == (1, 32, 4)
    for position in range(32):
        expected = states[0, position].abs().topk(4).indices
        assert sorted(dims[0, position].tolist()) == sorted(expected.tolist())
    assert (bits[0, 3] == bf16_bits(states[0, 3, dims[0, 3]])).all()


def test_another_token_at_any_position_reads_back_other_values():
    states, tokens = _states(rows=1), _tokens(rows=1)
    proof = _proofs(states, tokens, torch.tensor([32]))
    dims, bits = position_top_k(states, 4)
    for position in range(32):
        swapped = tokens.clone()
        swapped[0, position] = (swapped[0, position] + 1) % 260
        claimed = claimed_bits(proof, dims.numpy(), swapped.numpy())
        assert (claimed[0, position] != bits[0, position].numpy()).all(), position
        others = [p for p in range(32) if p != position]
        assert (claimed[0, others] == bits[0, others].numpy()).all()


def test_points_are_distinct_per_proof_and_differ_by_salt():
    dims = np.tile(np.arange(4), (2, 32, 1))
    tokens = np.full((2, 32), PAD_TOKEN)
    xs = points(dims, tokens, np.array([0, 1]))
    assert xs.shape == (2, 128) and (xs < 65497).all()
    assert len(set(xs[0].tolist())) == 128
    assert (xs[0] != xs[1]).mean() > 0.99


def test_bf16_bits_keep_sign_exponent_and_mantissa():
    bits = bf16_bits(torch.tensor([1.0, -2.0, 0.5]))
    assert bits.tolist() == [0x3F80, 0xC000, 0x3F00]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01\x02\x03", "fewer than its 4-byte header"),
        (b"\x00\x00\x04\x00" + b"\x01\x00" * 4, "chunk size 0 x 4 values"),
        (b"\x02\x00\x00\x00" + b"\x01\x00" * 4, "chunk size 2 x 0 values"),
        (b"\x02\x00\x02\x00" + b"\x01\x00" * 3, "not the 12 of 2 x 2 values"),
        (b"\x02\x00\x02\xe0" + b"\x01\x00" * 4, "unknown precision code 7"),
        (b"\x02\x00\x02\x00" + b"\xff\xff" * 4, "outside the field"),
    ],
)
def test_a_malformed_proof_is_refused_with_the_reason(raw, message):
    with pytest.raises(ProofFormatError, match=re.escape(message)):
        ChunkProof.from_base64(base64.b64encode(raw).decode())


def test_text_that_is_not_base64_is_refused():
    with pytest.raises(ProofFormatError, match="not valid base64"):
        ChunkProof.from_base64("not base64!")
