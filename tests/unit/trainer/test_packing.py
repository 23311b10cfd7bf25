"""Packed micro-batches compute exactly what each sample computes alone."""

from __future__ import annotations

import pytest
import torch

from asyncrl.models import load_model
from asyncrl.trainer.packing import assign_bins, micro_batches_for_rank, pack
from asyncrl.trainer.train_step import forward_logprobs
from asyncrl.transport.batches import Batch, Sample


def _pack(rows: list[list[Sample]]):
    """`rows` of samples packed as the trainer packs a batch holding them, sample after sample."""
    flat = [s for row in rows for s in row]
    ends = [sum(len(row) for row in rows[: r + 1]) for r in range(len(rows))]
    indices = [list(range(end - len(row), end)) for row, end in zip(rows, ends, strict=True)]
    return pack(Batch.from_samples(flat), indices)


def _sample(ids: list[int], n_prompt: int, temperature: float = 1.0) -> Sample:
    n = len(ids)
    return Sample(ids, [i >= n_prompt for i in range(n)], [1.0] * n, [-1.0] * n, 0, temperature)


@pytest.fixture(scope="module")
def model():
    return load_model("tiny")


def test_packed_logits_equal_standalone_logits(model):
    rows = [[_sample(list(range(10, 10 + n)), 2) for n in (7, 12, 5)], [_sample(list(range(40, 49)), 1)]]
    mb = _pack(rows)
    assert mb.input_ids.shape == (2, 24), "the short row is padded to the longest"
    with torch.no_grad():
        packed = model(input_ids=mb.input_ids, position_ids=mb.position_ids, attention_mask=mb.attention_mask)
        for r, row in enumerate(rows):
            offset = 0
            for s in row:
                alone = model(torch.tensor([s.input_ids])).logits[0]
                got = packed.logits[r, offset : offset + len(s.input_ids)]
                assert torch.allclose(got, alone, atol=1e-5)
                offset += len(s.input_ids)
        assert not packed.logits.isnan().any(), "padding rows must not produce NaNs"


def test_targets_are_shifted_within_each_sample_only():
    mb = _pack([[_sample([1, 2, 3], 1), _sample([4, 5], 1)]])
    assert mb.target_ids.tolist() == [2, 3, 0, 5, 0]
    assert mb.loss_mask.tolist() == [True, True, False, True, False]
    assert mb.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert mb.sample_ids.tolist() == [0, 0, 0, 1, 1]
    assert not mb.attention_mask[0, 0, 3, :3].any(), "no attention across samples"


def test_logprobs_divide_logits_by_the_sample_temperature(model):
    ids = [5, 6, 7, 8, 9]
    mb = _pack([[_sample(ids, 1, temperature=0.5)]])
    logprobs, entropy = forward_logprobs(model, mb)
    with torch.no_grad():
        expected = (model(torch.tensor([ids])).logits[0] / 0.5).log_softmax(-1)
    assert torch.allclose(logprobs[:4], expected[:4].gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1))
    assert torch.allclose(entropy[0], -(expected[0].exp() * expected[0]).sum())


def test_bins_fit_the_budget_and_oversized_samples_go_alone():
    lengths = [5, 9, 3, 20, 4, 7]
    bins = assign_bins(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(6))
    for b in bins:
        assert sum(lengths[i] for i in b) <= 10 or len(b) == 1


def test_rows_stack_into_micro_batches_within_the_budget():
    samples = [_sample(list(range(n)), 1) for n in (30, 20, 10, 10, 5, 40)]
    batches = micro_batches_for_rank(
        Batch.from_samples(samples), row_tokens=40, budget=80, rank=0, world_size=1
    )
    assert sum(mb.loss_tokens for mb in batches) == sum(n - 1 for n in (30, 20, 10, 10, 5, 40))
    for mb in batches:
        assert mb.input_ids.numel() <= 80
        assert mb.input_ids.shape[1] <= 40


def test_every_rank_gets_the_same_number_of_micro_batches():
    samples = [_sample(list(range(n)), 1) for n in (8, 8, 8)]
    per_rank = [micro_batches_for_rank(Batch.from_samples(samples), 10, 10, rank, 2) for rank in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == 2
    assert per_rank[1][-1].loss_tokens == 0, "the padding micro-batch trains nothing"
    assert sum(mb.loss_tokens for batches in per_rank for mb in batches) == 3 * 7
