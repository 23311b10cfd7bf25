"""The trainer's compute precision and process group are decided in one place."""

from __future__ import annotations

import pytest
import torch

from asyncrl.devices import DeviceError
from asyncrl.trainer.distributed import compute_dtype, init_distributed


def test_float16_is_refused_and_bfloat16_accepted():
    assert compute_dtype("bfloat16") is torch.bfloat16
    assert compute_dtype("float32") is torch.float32
    with pytest.raises(DeviceError, match="bfloat16"):
        compute_dtype("float16")


def test_one_cpu_rank_in_float32_is_not_sharded(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ranks = init_distributed("cpu", "float32")
    assert (ranks.rank, ranks.world_size, ranks.device, ranks.sharded) == (0, 1, torch.device("cpu"), False)
    assert ranks.dtype is torch.float32
