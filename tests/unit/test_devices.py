"""A process's `device` setting picks the GPU of its rank whenever there is one; a GPU is mocked (none
exists here)."""

from __future__ import annotations

import pytest
import torch

from asyncrl.devices import DeviceError, resolve_device


def _visible_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_auto_picks_the_gpu_of_this_rank_whenever_cuda_is_there(monkeypatch):
    _visible_gpus(monkeypatch, 2)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cpu", local_rank=1) == torch.device("cpu")


def test_auto_falls_back_to_the_cpu_without_cuda(monkeypatch):
    _visible_gpus(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_without_a_gpu_is_refused_with_what_to_set(monkeypatch):
    _visible_gpus(monkeypatch, 0)
    with pytest.raises(DeviceError, match="trainer.device = 'cuda'.*'auto' or 'cpu'"):
        resolve_device("cuda", setting="trainer.device")


def test_more_ranks_than_visible_gpus_is_refused(monkeypatch):
    _visible_gpus(monkeypatch, 1)
    with pytest.raises(DeviceError, match="CUDA_VISIBLE_DEVICES"):
        resolve_device("auto", local_rank=1)
