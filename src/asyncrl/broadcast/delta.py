"""Deltas between two versions of a shard, on the raw bit patterns of the weights, then zstd.

An optimizer step moves each weight a little, so the sign, exponent and high mantissa bits rarely change.
Two codecs turn that into runs of zeros:

- `sub-planes-zstd`: each element's bit pattern minus the old one, as an unsigned integer of the element's
  width (wrapping): a small move is a small integer, whose high bytes are all 0x00 or 0xFF;
- `xor-planes-zstd`: the XOR of the two bit patterns.

Byte k of every element is then grouped with byte k of the others (byte planes), where zstd squeezes the
constant high planes. Both are exact: decoding gives the new bytes bit for bit. Elements are aligned on
`phase` (where the weights' data starts, modulo the element width); the few bytes before the first whole
element and after the last are XORed.
"""

from __future__ import annotations

import json
import struct
from collections import Counter

import numpy as np
import zstandard

from asyncrl.broadcast.errors import DeltaError
from asyncrl.broadcast.files import Placed, VersionFiles

CODECS = ("sub-planes-zstd", "xor-planes-zstd")
# Widths of safetensors dtypes, for the byte planes.
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
               "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
MAX_HEADER = 100 << 20


def _body(size: int, stride: int, phase: int) -> tuple[int, int]:
    """[start, end) of the whole elements in `size` bytes whose first element starts at `phase`."""
    start = min(phase % stride, size)
    return start, start + (size - start) // stride * stride


def encode(
    new: bytes | memoryview,
    base: bytes | memoryview,
    stride: int,
    phase: int = 0,
    codec: str = CODECS[0],
    level: int = 1,
) -> bytes:
    """The delta that turns `base` into `new` (both the same length)."""
    if len(new) != len(base):
        raise ValueError(f"a delta needs equal lengths, got {len(new)} and {len(base)}")
    new_bytes, base_bytes = np.frombuffer(new, np.uint8), np.frombuffer(base, np.uint8)
    start, end = _body(len(new_bytes), stride, phase)
    diff = np.bitwise_xor(new_bytes, base_bytes)
    if codec == "sub-planes-zstd":
        words = UINT[stride]
        diff[start:end] = (new_bytes[start:end].view(words) - base_bytes[start:end].view(words)).view(
            np.uint8
        )
    elif codec != "xor-planes-zstd":
        raise ValueError(f"unknown delta codec {codec!r}")
    planes = diff[start:end].reshape(-1, stride).T
    layout = np.concatenate([diff[:start], planes.reshape(-1), diff[end:]])
    return zstandard.ZstdCompressor(level=level).compress(layout.tobytes())


def decode(
    delta: bytes, base: bytes | memoryview, stride: int, phase: int = 0, codec: str = CODECS[0]
) -> bytes:
    """`new` from its delta and `base`. Raises DeltaError when the payload is not a delta of this size."""
    size = len(base)
    try:
        raw = zstandard.ZstdDecompressor().decompress(delta, max_output_size=size)
    except zstandard.ZstdError as e:
        raise DeltaError(f"the delta does not decompress: {e}") from None
    if len(raw) != size:
        raise DeltaError(f"the delta holds {len(raw)} bytes, expected {size}")
    base_bytes = np.frombuffer(base, np.uint8)
    start, end = _body(size, stride, phase)
    layout = np.frombuffer(raw, np.uint8)
    diff = np.concatenate([layout[:start], layout[start:end].reshape(stride, -1).T.reshape(-1), layout[end:]])
    new = np.bitwise_xor(diff, base_bytes)
    if codec == "sub-planes-zstd":
        words = UINT[stride]
        new[start:end] = (base_bytes[start:end].view(words) + diff[start:end].view(words)).view(np.uint8)
    elif codec != "xor-planes-zstd":
        raise DeltaError(f"unknown delta codec {codec!r}")
    return new.tobytes()


def element_layout(files: VersionFiles) -> tuple[int, int]:
    """(width, phase) of the weights: the dtype width holding most bytes of the safetensors files, and
    where the largest file's data starts in the stream, modulo that width. (4, 0) when none can be read."""
    widths: Counter[int] = Counter()
    largest: tuple[int, int] | None = None  # (size, data start in the stream)
    for entry in files.entries:
        header = _safetensors_header(files, entry)
        if header is None:
            continue
        length, tensors = header
        for name, tensor in tensors.items():
            if name != "__metadata__" and isinstance(tensor, dict) and tensor.get("dtype") in DTYPE_BYTES:
                start, end = (tensor.get("data_offsets") or [0, 0])[:2]
                widths[DTYPE_BYTES[tensor["dtype"]]] += end - start
        if largest is None or entry.size > largest[0]:
            largest = (entry.size, entry.offset + 8 + length)
    if not widths or largest is None:
        return 4, 0
    width = widths.most_common(1)[0][0]
    return width, largest[1] % width


def _safetensors_header(files: VersionFiles, entry: Placed) -> tuple[int, dict] | None:
    """(header length, header) of a safetensors file; None for any other file."""
    path, size = entry.path, entry.size
    if not path.endswith(".safetensors") or size < 8:
        return None
    try:
        with open(files.root / path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > min(MAX_HEADER, size - 8):
                return None
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return None
    return (length, header) if isinstance(header, dict) else None


def best_codec(pairs: list[tuple[bytes, bytes]], stride: int, phase: int, level: int = 1) -> str:
    """The codec giving the fewest bytes on these (new, base) samples."""
    return min(
        CODECS, key=lambda codec: sum(len(encode(n, b, stride, phase, codec, level)) for n, b in pairs)
    )
