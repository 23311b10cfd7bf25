"""Which torch device a process runs on, from its `device = "auto" | "cpu" | "cuda"` setting.

The trainer and the built-in engine decide it the same way: CUDA whenever torch sees a GPU, unless the
setting says otherwise, so one config runs on a laptop and on a GPU node alike.
"""

from __future__ import annotations

import torch

from asyncrl.config import Device
from asyncrl.errors import UserError


class DeviceError(UserError):
    """The configured device (or its precision) cannot be used on this machine."""


def resolve_device(choice: Device, local_rank: int = 0, setting: str = "device") -> torch.device:
    """The device `choice` names for local rank `local_rank`: CUDA device `local_rank`, or the CPU;
    `setting` is the config key, named in the error."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"{setting} = 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    if local_rank >= torch.cuda.device_count():
        raise DeviceError(
            f"rank {local_rank} needs CUDA device {local_rank} but only {torch.cuda.device_count()} are "
            "visible; start fewer ranks per node or make more devices visible (CUDA_VISIBLE_DEVICES)"
        )
    return torch.device("cuda", local_rank)
