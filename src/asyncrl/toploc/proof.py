"""A chunk proof: for every token of a chunk, the largest-magnitude values of the last hidden state that
produced it, bound to that token, encoded as one polynomial.

Why per token, and why bound: the paper's proof commits the top-k values of the whole chunk's [n, H]
states, which a model's few outlier dimensions fill from a handful of positions, so most tokens of a
chunk commit nothing. And a state is computed *from* the tokens before the one it produces, so a token
edited after generation leaves its own position's state unchanged (and every state, if it is the last
token). Here each position commits its own `per_position` largest values, and each value's interpolation
point is a hash of (position, dimension, the token that state produced, a salt): a swapped token moves
its position's points off the ones interpolated, where the polynomial reads back pseudo-random field
elements instead of the values, whatever the model.

Wire format, little-endian: the chunk size (2 bytes), values per position (1 byte), the prover's
precision (3 bits) and the salt (5 bits) in one byte, then chunk_size x per_position coefficients over
GF(65497), 2 bytes each: 260 bytes for 32 tokens x 4 values. Positions past a short last chunk's end
interpolate 0 at points of a token id no vocabulary has, so every proof of a generation has one size.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np
import torch

from asyncrl.toploc.errors import ProofBuildError, ProofFormatError
from asyncrl.toploc.field import PRIME, evaluate, interpolate

HEADER_BYTES = 4
COEFFICIENT_BYTES = 2
SALTS = 32
"""Salts tried, in turn, until a chunk's points are distinct (each try collides with probability about
k^2 / 2p, 12% at k = 128, so 32 tries all fail with probability below 1e-29)."""

PRECISIONS = (
    ("float32", "cpu"),
    ("bfloat16", "cpu"),
    ("float16", "cpu"),
    ("float32", "cuda"),
    ("bfloat16", "cuda"),
    ("float16", "cuda"),
)
"""(dtype, device type) a prover can record: the verifier's tolerance depends on how it computed."""
Precision = tuple[str, str]

PAD_TOKEN = (1 << 24) - 1
"""The token id of positions past a chunk's end (vocabularies have fewer than 2^24 - 1 ids)."""


def bf16_bits(values: torch.Tensor) -> torch.Tensor:
    """The bfloat16 bit patterns (0..65535, as int64) of `values` rounded to bfloat16."""
    return values.to(torch.bfloat16).view(torch.int16).to(torch.int64) & 0xFFFF


def position_top_k(hidden: torch.Tensor, per_position: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `per_position` largest-magnitude dimensions of each state in `hidden` [..., H], and their
    bfloat16 bit patterns, both [..., per_position] int64."""
    dims = hidden.abs().topk(per_position, dim=-1, sorted=False).indices
    return dims, bf16_bits(hidden.gather(-1, dims))


def points(dims: np.ndarray, tokens: np.ndarray, salts: np.ndarray) -> np.ndarray:
    """Interpolation points [M, C * p] of values at dimensions `dims` [M, C, p] of states that produced
    `tokens` [M, C], per row's salt [M]: a 64-bit mix (splitmix64's finaliser) of (position, dimension,
    token, salt), reduced into the field."""
    rows, positions, _ = dims.shape
    position = np.arange(positions, dtype=np.uint64)[None, :, None]
    key = (position << np.uint64(44)) | (dims.astype(np.uint64) << np.uint64(24))
    key |= tokens.astype(np.uint64)[:, :, None] & np.uint64(PAD_TOKEN)
    z = key + (salts.astype(np.uint64)[:, None, None] + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z % np.uint64(PRIME)).reshape(rows, -1)


def encode(
    dims: np.ndarray, bits: np.ndarray, tokens: np.ndarray, lengths: np.ndarray, precision: Precision
) -> list[bytes]:
    """Proofs of chunks whose positions' top dimensions and bit patterns are `dims` and `bits` ([M, C, p]
    each), produced `tokens` [M, C], and hold `lengths` [M] real positions."""
    if precision not in PRECISIONS:
        raise ProofBuildError(f"proofs record {', '.join(map(str, PRECISIONS))}, not {precision}: serve in "
                              "one of those, or without TOPLOC")  # fmt: skip
    rows, size, per_position = dims.shape
    past_end = np.arange(size)[None, :] >= lengths[:, None]
    tokens = np.where(past_end, PAD_TOKEN, tokens)
    values = np.where(past_end[:, :, None], 0, bits).reshape(rows, -1)
    salts = np.zeros(rows, dtype=np.int64)
    xs = np.zeros((rows, size * per_position), dtype=np.uint64)
    pending = np.arange(rows)
    for salt in range(SALTS):
        tried = points(dims[pending], tokens[pending], np.full(len(pending), salt))
        distinct = (np.diff(np.sort(tried, axis=1), axis=1) != 0).all(axis=1)
        salts[pending[distinct]], xs[pending[distinct]] = salt, tried[distinct]
        pending = pending[~distinct]
        if not len(pending):
            break
    else:
        raise ProofBuildError(f"no salt of {SALTS} gives distinct points; lower toploc.top_k")
    coefficients = interpolate(xs, values)
    head = size.to_bytes(2, "little") + bytes([per_position])
    code = PRECISIONS.index(precision) << 5
    return [
        head + bytes([code | int(salt)]) + row.astype("<u2").tobytes()
        for salt, row in zip(salts, coefficients, strict=True)
    ]


@dataclass(frozen=True)
class ChunkProof:
    chunk_size: int
    """Tokens per chunk of the generation this proof belongs to (its last chunk may hold fewer)."""
    per_position: int
    """Values committed per token."""
    precision: Precision
    """How the prover computed the states: (dtype, device type)."""
    salt: int
    coefficients: np.ndarray
    """[chunk_size * per_position] field elements, lowest degree first."""

    @classmethod
    def from_base64(cls, text: str) -> ChunkProof:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ProofFormatError("the proof is not valid base64") from None
        if len(raw) <= HEADER_BYTES:
            raise ProofFormatError(f"the proof has {len(raw)} bytes, fewer than its 4-byte header")
        chunk_size, per_position = int.from_bytes(raw[:2], "little"), raw[2]
        if not chunk_size or not per_position:
            raise ProofFormatError(f"the proof records chunk size {chunk_size} x {per_position} values")
        expected = HEADER_BYTES + COEFFICIENT_BYTES * chunk_size * per_position
        if len(raw) != expected:
            raise ProofFormatError(
                f"the proof has {len(raw)} bytes, not the {expected} of {chunk_size} x {per_position} values"
            )
        if raw[3] >> 5 >= len(PRECISIONS):
            raise ProofFormatError(f"the proof records an unknown precision code {raw[3] >> 5}")
        coefficients = np.frombuffer(raw[HEADER_BYTES:], dtype="<u2").astype(np.uint64)
        if (coefficients >= PRIME).any():
            raise ProofFormatError("the proof holds numbers outside the field")
        return cls(chunk_size, per_position, PRECISIONS[raw[3] >> 5], raw[3] & (SALTS - 1), coefficients)

    @property
    def top_k(self) -> int:
        """Values a full chunk commits."""
        return self.chunk_size * self.per_position


def claimed_bits(proofs: list[ChunkProof], dims: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns the proofs claim ([M, C, p]) at dimensions `dims` [M, C, p] of states
    that produced `tokens` [M, C], one row per proof."""
    salts = np.array([p.salt for p in proofs], dtype=np.int64)
    coefficients = np.stack([p.coefficients for p in proofs])
    return evaluate(coefficients, points(dims, tokens, salts)).reshape(dims.shape)
