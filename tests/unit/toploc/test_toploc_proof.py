"""Chunk proofs: 260 bytes for 128 values, recording their chunk size, and the committed values read back at
their indices."""

from __future__ import annotations

import base64
import re

import pytest
import torch

from asyncrl.toploc.builder import build_proofs
from asyncrl.toploc.errors import ProofFormatError
from asyncrl.toploc.proof import ChunkProof, bf16_bits, chunk_top_k, claimed_bits


def _states(rows: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, 32, 128, generator=torch.Generator().manual_seed(seed))


def test_a_proof_of_128_values_takes_260_bytes_and_records_its_chunk_size_and_top_k():
    proofs = build_proofs(_states(), torch.tensor([32, 32, 5]), 128)
    # 2-byte chunk size + 2-byte modulus + 128 2-byte coefficients
    assert [len(p) for p in proofs] == [260, 260, 260]
    parsed = ChunkProof.from_base64(base64.b64encode(proofs[2]).decode())
    assert (parsed.chunk_size, parsed.top_k) == (32, 128)


def test_the_proof_reads_back_the_top_k_values_at_their_indices():
    states = _states()
    lengths = torch.tensor([32, 20, 1])
    proofs = [
        ChunkProof.from_base64(base64.b64encode(p).decode()) for p in build_proofs(states, lengths, 128)
    ]
    indices, bits = chunk_top_k(states, lengths, 128)
    assert (claimed_bits(proofs, indices.numpy()) == bits.numpy()).all()


def test_the_top_k_are_the_largest_magnitudes_of_the_real_positions_only():
    states = _states(rows=1)
    states[0, 10:] = 100.0  # past the chunk's end: never committed, however large
    indices, bits = chunk_top_k(states, torch.tensor([10]), 128)
    assert (indices < 10 * 128).all()
    flat = states[0, :10].flatten()
    expected = flat.abs().topk(128).indices
    assert sorted(indices[0].tolist()) == sorted(expected.tolist())
    assert (bits[0] == bf16_bits(flat[indices[0]])).all()


def test_bf16_bits_keep_sign_exponent_and_mantissa():
    bits = bf16_bits(torch.tensor([1.0, -2.0, 0.5]))
    assert bits.tolist() == [0x3F80, 0xC000, 0x3F00]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"\x01\x02\x03").decode(), "not 4 + 2 per coefficient"),
        (base64.b64encode(b"\x20\x00\x00\x00" + b"\x01\x00" * 4).decode(), "outside the field"),
        (base64.b64encode(b"\x20\x00\xd9\xff" + b"\xff\xff" * 4).decode(), "outside the field"),
        (base64.b64encode(b"\x00\x00\xd9\xff" + b"\x01\x00" * 4).decode(), "chunk size of 0"),
    ],
)
def test_a_malformed_proof_is_refused_with_the_reason(text, message):
    with pytest.raises(ProofFormatError, match=re.escape(message)):
        ChunkProof.from_base64(text)
