"""Attention over packed rows from per-token segment ids, without a dense [L, L] mask per row.

A packed row holds units (the samples of one prompt: its shared tokens, then one branch per sample).
Query i sees key j when j <= i, both lie in the same unit, and j is shared prompt or on i's own branch.
The mask is built and used one block of queries at a time against the keys up to the block's end, so
memory grows with block x L, not L^2; rows no longer than a block (the default job's) take one SDPA call,
which measured fastest on CPU. Registered with transformers as an attention implementation, so the HF
model's own layers call it; the layout travels as a keyword argument of the model's forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "asyncrl_packed"
QUERY_BLOCK = 1024
"""Queries per SDPA call: a block's mask is QUERY_BLOCK x L booleans."""


@dataclass
class PackedLayout:
    unit_ids: torch.Tensor
    """[R, L] the unit each token belongs to (every padding token is a unit of its own)."""
    branch_ids: torch.Tensor
    """[R, L] -1 on a unit's shared prompt, else the token's sample (padding: unique ids)."""
    query_block: int = QUERY_BLOCK


def block_mask(layout: PackedLayout, start: int, end: int) -> torch.Tensor:
    """[R, 1, end - start, end] True where queries start..end-1 may attend to keys 0..end-1."""
    unit, branch = layout.unit_ids, layout.branch_ids
    q_unit, k_unit = unit[:, start:end, None], unit[:, None, :end]
    q_branch, k_branch = branch[:, start:end, None], branch[:, None, :end]
    queries = torch.arange(start, end, device=unit.device)[:, None]
    causal = torch.arange(end, device=unit.device)[None, :] <= queries
    return (causal & (q_unit == k_unit) & ((k_branch == -1) | (k_branch == q_branch))).unsqueeze(1)


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    packed_layout: PackedLayout | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query [R, H, L, D], key/value [R, H_kv, L, D]; returns
    [R, L, H, D]. Without a layout (a plain call of the model), transformers' SDPA attention."""
    if packed_layout is None:  # a plain call of the model, with the mask transformers built for SDPA
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1 and query.device.type == "cuda":  # SDPA's CUDA kernels take a mask only without GQA
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    gqa = key.shape[1] != query.shape[1]
    dtype = query.dtype
    if query.device.type == "cpu" and dtype != torch.float32:
        # torch's CPU attention backward in bfloat16 took 6x its float32 time on the default job's batch
        # (161 ms against 25), more than the bfloat16 matmuls save.
        query, key, value = query.float(), key.float(), value.float()
    length, step = query.shape[2], packed_layout.query_block
    blocks = []
    for start in range(0, length, step):
        end = min(length, start + step)
        blocks.append(
            F.scaled_dot_product_attention(
                query[:, :, start:end],
                key[:, :, :end],
                value[:, :, :end],
                attn_mask=block_mask(packed_layout, start, end),
                scale=scaling,
                enable_gqa=gqa,
            )
        )
    out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=2)
    return out.transpose(1, 2).to(dtype).contiguous(), None


SKIP_MASK = torch.empty(0, 0, 0, 0, dtype=torch.bool)
"""Passed as the attention mask of a packed call: transformers takes any 4-D mask as already built, so it
skips building its own (an L^2 tensor from the position ids, which this attention does not read)."""

AttentionInterface.register(NAME, packed_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)
