"""A slot-based KV cache: one row per running sequence, kept dense so the batch is a slice, not a gather.

Rows 0..B-1 hold the B running sequences. When one finishes, the last row moves into its place, so a
decode step reads `k[:, :B, :, :L]` as a view. The length dimension grows in chunks as sequences do.
"""

from __future__ import annotations

import torch

GROWTH_CHUNK = 256


class SlotKVCache:
    def __init__(
        self,
        n_layers: int,
        n_slots: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        self.max_len = max_len
        self._shape = (n_layers, n_slots, n_kv_heads, 0, head_dim)
        self.capacity = 0
        self.k = torch.empty(self._shape, dtype=dtype, device=device)
        self.v = torch.empty(self._shape, dtype=dtype, device=device)
        self.ensure_capacity(min(GROWTH_CHUNK, max_len))

    @property
    def n_slots(self) -> int:
        return self._shape[1]

    def ensure_capacity(self, length: int) -> None:
        """Grow the length dimension to hold `length` tokens per row (amortised: in chunks)."""
        if length <= self.capacity:
            return
        if length > self.max_len:
            raise ValueError(f"sequence of {length} tokens exceeds max_model_len {self.max_len}")
        new_capacity = min(self.max_len, -(-length // GROWTH_CHUNK) * GROWTH_CHUNK)
        n_layers, n_slots, n_kv_heads, _, head_dim = self._shape
        shape = (n_layers, n_slots, n_kv_heads, new_capacity, head_dim)
        for name in ("k", "v"):
            old = getattr(self, name)
            # Zeroed, not empty: a decode step reads every row up to the batch's longest, and a masked-out
            # position still multiplies its value by a zero weight, so garbage NaN bits would poison the row.
            new = torch.zeros(shape, dtype=old.dtype, device=old.device)
            new[:, :, :, : self.capacity] = old
            setattr(self, name, new)
        self.capacity = new_capacity

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of row `src` into row `dst` (compaction, prefix sharing)."""
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]
