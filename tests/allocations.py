"""The largest tensor an op produces while a function runs: a deterministic stand-in for peak memory on
CPU (torch reports none), exact for what decides it here, one tensor of size L^2 or N x vocabulary."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _Largest(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.bytes = max(self.bytes, leaf.numel() * leaf.element_size())
        return out


def largest_tensor_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the largest tensor any op creates while `fn()` runs (forward and backward alike)."""
    mode = _Largest()
    with mode:
        fn()
    return mode.bytes
