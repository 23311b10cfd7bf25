"""Deltas rebuild the new bytes exactly, and are small when weights moved a little."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from asyncrl.broadcast import delta
from asyncrl.broadcast.errors import DeltaError
from asyncrl.broadcast.files import Span, VersionFiles


def _step(seed: int, n: int = 100_001, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Weights before and after an Adam-like step (every value moves by about 1e-4)."""
    rng = np.random.default_rng(seed)
    old = (rng.standard_normal(n) * 0.02).astype(dtype)
    new = (old - 1e-4 * np.sign(rng.standard_normal(n))).astype(dtype)
    return old, new


@pytest.mark.parametrize("codec", delta.CODECS)
@pytest.mark.parametrize("phase", [0, 1, 3])
def test_a_delta_rebuilds_the_new_bytes_bit_for_bit(codec, phase):
    old, new = _step(0)
    # `phase` bytes of something else first: the weights start mid-element of the shard.
    head = b"\x07\x01\x02"[:phase]
    old_bytes, new_bytes = head + old.tobytes(), b"\x09\x05\x06"[:phase] + new.tobytes()
    payload = delta.encode(new_bytes, old_bytes, 4, phase, codec)
    assert delta.decode(payload, old_bytes, 4, phase, codec) == new_bytes
    # Small moves leave the high bytes of every float unchanged: their planes compress to nothing.
    assert len(payload) < 0.7 * len(new_bytes)


def test_differences_of_the_bit_patterns_beat_xor_on_float32_steps():
    old, new = _step(1)
    sizes = {c: len(delta.encode(new.tobytes(), old.tobytes(), 4, 0, c)) for c in delta.CODECS}
    assert sizes["sub-planes-zstd"] < 0.9 * sizes["xor-planes-zstd"]
    pairs = [(new.tobytes(), old.tobytes())]
    assert delta.best_codec(pairs, 4, 0) == "sub-planes-zstd"


@pytest.mark.parametrize("length", [1, 3, 4, 7, 4097])
@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_any_length_and_width_round_trips(length, stride):
    rng = np.random.default_rng(length)
    old, new = rng.bytes(length), rng.bytes(length)
    for codec in delta.CODECS:
        payload = delta.encode(new, old, stride, length % stride, codec)
        assert delta.decode(payload, old, stride, length % stride, codec) == new


def test_unchanged_bytes_cost_almost_nothing():
    old, _ = _step(2)
    assert len(delta.encode(old.tobytes(), old.tobytes(), 4)) < 200


def test_a_corrupt_or_foreign_payload_is_a_delta_error():
    old, new = _step(3)
    payload = delta.encode(new.tobytes(), old.tobytes(), 4)
    with pytest.raises(DeltaError):
        delta.decode(payload[:-10], old.tobytes(), 4)
    with pytest.raises(DeltaError):
        delta.decode(payload, old.tobytes()[:-8], 4)  # a delta of another size
    with pytest.raises(ValueError):
        delta.encode(new.tobytes(), old.tobytes()[:-1], 4)


def test_the_layout_is_the_dtype_holding_most_bytes_and_where_its_data_starts(tmp_path):
    save_file(
        {"w": np.zeros(1000, np.float16), "b": np.zeros(10, np.float32)}, str(tmp_path / "model.safetensors")
    )
    (tmp_path / "config.json").write_text("{}\n")
    size = (tmp_path / "model.safetensors").stat().st_size
    files = VersionFiles(tmp_path, [Span("config.json", 3, 0), Span("model.safetensors", size, 3)])
    header = int.from_bytes((tmp_path / "model.safetensors").read_bytes()[:8], "little")
    assert delta.element_layout(files) == (2, (3 + 8 + header) % 2)
    assert delta.element_layout(VersionFiles(tmp_path, [Span("config.json", 3, 0)])) == (4, 0)
