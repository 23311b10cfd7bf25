"""Packed attention from unit and branch ids: the same output as a dense block-causal mask, with memory
that grows linearly in the row length."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asyncrl.trainer.attention import PackedLayout, block_mask, packed_attention
from tests.allocations import largest_tensor_bytes


def _layout(length: int, query_block: int) -> PackedLayout:
    """One row: a unit of a 5-token prompt with branches of 4 and 6 tokens, a lone sample filling the
    rest but 3 tokens, then 3 padding tokens."""
    unit = [0] * 15 + [1] * (length - 18) + [-100, -101, -102]
    branch = [-1] * 5 + [0] * 4 + [1] * 6 + [2] * (length - 18) + [-200, -201, -202]
    return PackedLayout(torch.tensor([unit]), torch.tensor([branch]), query_block)


def _dense_mask(layout: PackedLayout) -> torch.Tensor:
    unit, branch = layout.unit_ids[0], layout.branch_ids[0]
    n = len(unit)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for q in range(n):
        for k in range(q + 1):
            allowed[q, k] = bool(unit[q] == unit[k] and (branch[k] == -1 or branch[k] == branch[q]))
    return allowed


def test_blocks_of_queries_attend_exactly_as_the_dense_block_causal_mask():
    torch.manual_seed(0)
    length = 40
    query = torch.randn(1, 4, length, 8)
    key, value = torch.randn(1, 2, length, 8), torch.randn(1, 2, length, 8)
    dense = _dense_mask(_layout(length, 1024))
    want = F.scaled_dot_product_attention(query, key, value, attn_mask=dense, enable_gqa=True).transpose(1, 2)
    for block in (7, 16, 1024):
        layout = _layout(length, block)
        assert torch.equal(block_mask(layout, 0, length)[0, 0], dense)
        got, _ = packed_attention(torch.nn.Module(), query, key, value, None, packed_layout=layout)
        assert torch.allclose(got, want, atol=1e-6), block


def test_attention_memory_grows_linearly_with_the_row_not_quadratically():
    def largest(length: int) -> int:
        q, kv = torch.randn(1, 2, length, 8), torch.randn(1, 2, length, 8)
        layout = _layout(length, 256)
        attend = lambda: packed_attention(torch.nn.Module(), q, kv, kv, None, packed_layout=layout)  # noqa: E731
        return largest_tensor_bytes(attend)

    small, large = largest(2048), largest(8192)
    assert large <= 4.5 * small, (small, large)  # 4x the row: a dense mask would take 16x
    assert large < 8192 * 8192, "nothing of size L^2 exists"


def test_bfloat16_on_the_cpu_attends_in_float32_and_answers_in_bfloat16():
    torch.manual_seed(1)
    length = 40
    query = torch.randn(1, 4, length, 8, dtype=torch.bfloat16, requires_grad=True)
    key, value = (torch.randn(1, 2, length, 8, dtype=torch.bfloat16, requires_grad=True) for _ in "kv")
    layout = _layout(length, 1024)
    got, _ = packed_attention(torch.nn.Module(), query, key, value, None, packed_layout=layout)
    inputs = [t.detach().float().requires_grad_() for t in (query, key, value)]
    want, _ = packed_attention(torch.nn.Module(), *inputs, None, packed_layout=layout)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16))
    got.float().sum().backward()
    want.sum().backward()
    for low, high in zip((query, key, value), inputs, strict=True):
        assert low.grad.dtype == torch.bfloat16 and torch.equal(low.grad, high.grad.to(torch.bfloat16))
