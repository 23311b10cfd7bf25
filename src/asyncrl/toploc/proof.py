"""A chunk proof: the top-k last hidden state values of a chunk of tokens, encoded as a polynomial.

For a chunk of n tokens, the model's last hidden states (after the final norm, the input of the LM head)
[n, H] are flattened and the k values of largest magnitude taken. Their flat indices, reduced by the
largest modulus m <= 65497 that keeps them distinct, are the points at which a polynomial over
GF(65497) takes their bfloat16 bit patterns. The proof is the chunk size it was built with (2 bytes), m (2
bytes), then the k coefficients (2 bytes each), little-endian: 260 bytes for k = 128, base64 on the wire;
so a proof records its chunk size and top-k (the number of coefficients). A verifier evaluates the
polynomial at its own top-k indices to read back the values the generator claims there.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np
import torch

from asyncrl.toploc.errors import ProofFormatError
from asyncrl.toploc.field import MIN_MODULUS, PRIME, evaluate, injective_moduli, interpolate

HEADER_BYTES = 4
"""The chunk size, then the modulus."""
COEFFICIENT_BYTES = 2


def bf16_bits(values: torch.Tensor) -> torch.Tensor:
    """The bfloat16 bit patterns (0..65535, as int64) of `values` rounded to bfloat16."""
    return values.to(torch.bfloat16).view(torch.int16).to(torch.int64) & 0xFFFF


def chunk_top_k(hidden: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest-magnitude values of each chunk in `hidden` [M, C, H], of which only the first
    `lengths[i]` positions of row i are real tokens. Returns their flat indices into the row's real
    [lengths[i], H] states and their bfloat16 bit patterns, both [M, k] int64."""
    rows, positions, _ = hidden.shape
    real = torch.arange(positions).unsqueeze(0) < lengths.unsqueeze(1)
    # Magnitudes are >= 0, so -1 keeps positions past a row's end out of its top-k.
    magnitude = hidden.abs().masked_fill(~real.unsqueeze(2), -1.0)
    indices = magnitude.view(rows, -1).topk(k, dim=1, sorted=False).indices
    return indices, bf16_bits(hidden.reshape(rows, -1).gather(1, indices))


def encode(indices: np.ndarray, bits: np.ndarray, chunk_size: int) -> list[bytes]:
    """Proofs for the chunks of `chunk_size` tokens whose top-k flat indices and bfloat16 bit patterns are
    `indices` and `bits` ([M, k] each)."""
    moduli = injective_moduli(indices)
    coefficients = interpolate(indices % moduli[:, None], bits)
    size = chunk_size.to_bytes(2, "little")
    return [
        size + int(modulus).to_bytes(2, "little") + row.astype("<u2").tobytes()
        for modulus, row in zip(moduli, coefficients, strict=True)
    ]


@dataclass(frozen=True)
class ChunkProof:
    chunk_size: int
    """Tokens per chunk of the generation this proof belongs to (its last chunk may hold fewer)."""
    modulus: int
    coefficients: np.ndarray
    """[k] field elements, lowest degree first."""

    @classmethod
    def from_base64(cls, text: str) -> ChunkProof:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ProofFormatError("the proof is not valid base64") from None
        if len(raw) <= HEADER_BYTES or (len(raw) - HEADER_BYTES) % COEFFICIENT_BYTES:
            raise ProofFormatError(f"the proof has {len(raw)} bytes, not 4 + 2 per coefficient")
        chunk_size = int.from_bytes(raw[:2], "little")
        modulus = int.from_bytes(raw[2:HEADER_BYTES], "little")
        coefficients = np.frombuffer(raw[HEADER_BYTES:], dtype="<u2").astype(np.uint64)
        if not chunk_size:
            raise ProofFormatError("the proof records a chunk size of 0")
        if not MIN_MODULUS <= modulus <= PRIME or (coefficients >= PRIME).any():
            raise ProofFormatError("the proof holds numbers outside the field")
        return cls(chunk_size, modulus, coefficients)

    @property
    def top_k(self) -> int:
        return len(self.coefficients)


def claimed_bits(proofs: list[ChunkProof], indices: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns the proofs claim at flat `indices` ([M, k], one row per proof)."""
    moduli = np.array([p.modulus for p in proofs], dtype=np.int64)
    coefficients = np.stack([p.coefficients for p in proofs])
    return evaluate(coefficients, indices % moduli[:, None])
