"""Packed micro-batches compute exactly what each sample computes alone, also where the samples of one
prompt share its tokens."""

from __future__ import annotations

import pytest
import torch

from asyncrl.models import load_model
from asyncrl.trainer.attention import PackedLayout, block_mask
from asyncrl.trainer.packing import assign_bins, micro_batches_for_rank, pack, prompt_units
from asyncrl.trainer.policy import forward_logprobs
from asyncrl.transport.batches import Batch, Sample


def _pack(rows: list[list[Sample]]):
    """`rows` of samples packed as the trainer packs a batch holding them, sample after sample, sharing
    nothing."""
    flat = [s for row in rows for s in row]
    ends = [sum(len(row) for row in rows[: r + 1]) for r in range(len(rows))]
    indices = [[(0, [i]) for i in range(end - len(row), end)] for row, end in zip(rows, ends, strict=True)]
    return pack(Batch.from_samples(flat), indices)


def _sample(ids: list[int], n_prompt: int, temperature: float = 1.0) -> Sample:
    n = len(ids)
    return Sample(ids, [i >= n_prompt for i in range(n)], [1.0] * n, [-1.0] * n, 0, temperature)


@pytest.fixture(scope="module")
def model():
    return load_model("tiny")


@pytest.fixture(scope="module")
def reference():
    """The same weights, run by transformers' own forward (the trainer's model runs packed attention)."""
    return load_model("tiny")


def _alone_logprobs(reference, ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    """Logprob of each next token of `ids` run alone (the last position predicts nothing: 0)."""
    logits = reference(torch.tensor([ids])).logits[0].float() / temperature
    chosen = logits[:-1].log_softmax(-1).gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)
    return torch.cat([chosen, torch.zeros(1)])


def test_packed_logprobs_equal_standalone_logprobs(model, reference):
    rows = [[_sample(list(range(10, 10 + n)), 2) for n in (7, 12, 5)], [_sample(list(range(40, 49)), 1)]]
    mb = _pack(rows)
    assert mb.input_ids.shape == (2, 24), "the short row is padded to the longest"
    with torch.no_grad():
        packed, entropy = forward_logprobs(model, mb)
        packed = packed.view(2, 24)
        for r, row in enumerate(rows):
            offset = 0
            for s in row:
                n = len(s.input_ids)
                got = packed[r, offset : offset + n].masked_fill(torch.arange(n) == n - 1, 0.0)
                assert torch.allclose(got, _alone_logprobs(reference, s.input_ids), atol=1e-5)
                offset += n
    assert not entropy.isnan().any(), "padding rows must not produce NaNs"


def test_targets_are_shifted_within_each_sample_only():
    mb = _pack([[_sample([1, 2, 3], 1), _sample([4, 5], 1)]])
    assert mb.target_ids.tolist() == [2, 3, 0, 5, 0]
    assert mb.loss_mask.tolist() == [True, True, False, True, False]
    assert mb.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert mb.sample_ids.tolist() == [0, 0, 0, 1, 1]
    mask = block_mask(PackedLayout(mb.unit_ids, mb.branch_ids), 0, 5)
    assert not mask[0, 0, 3, :3].any(), "no attention across samples"
    assert mask[0, 0, 4, 3:5].all() and mask[0, 0, 2, :3].all(), "causal attention within a sample"


def test_logprobs_divide_logits_by_the_sample_temperature(model, reference):
    ids = [5, 6, 7, 8, 9]
    mb = _pack([[_sample(ids, 1, temperature=0.5)]])
    logprobs, entropy = forward_logprobs(model, mb)
    with torch.no_grad():
        expected = (reference(torch.tensor([ids])).logits[0] / 0.5).log_softmax(-1)
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


def _group(prompt: list[int], completions: list[list[int]]) -> list[Sample]:
    """The rollouts of one prompt, each with its own advantages and inference logprobs."""
    samples = []
    for k, completion in enumerate(completions):
        n, ids = len(prompt) + len(completion), prompt + completion
        mask = [i >= len(prompt) for i in range(n)]
        samples.append(Sample(ids, mask, [0.5 - k] * n, [-1.0 - 0.1 * k] * n, 0, 0.8 + 0.1 * k))
    return samples


def _gradients(model, micro_batches):
    from asyncrl.trainer.config import LossConfig
    from asyncrl.trainer.losses import LossInputs, masked_is

    model.zero_grad()
    for mb in micro_batches:
        logprobs, _ = forward_logprobs(model, mb)
        inputs = LossInputs(logprobs, mb.inference_logprobs, mb.advantages, mb.loss_mask, mb.sample_ids, 40)
        masked_is(inputs, LossConfig()).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_samples_of_one_prompt_share_its_tokens_and_train_exactly_as_alone(model):
    samples = _group([7, 8, 9, 10, 11], [[20, 21, 22], [23, 24], [25, 26, 27, 28]])
    samples += [_sample([30, 31, 32, 33], 2)] + _group([40, 41, 42], [[43, 44], [45]])
    batch = Batch.from_samples(samples)
    assert prompt_units(batch) == [(4, [0, 1, 2]), (0, [3]), (2, [4, 5])]
    [shared] = micro_batches_for_rank(batch, row_tokens=64, budget=64, rank=0, world_size=1)
    alone = pack(batch, [[(0, [i]) for i in range(len(samples))]])
    assert shared.input_ids.numel() == (4 + 4 + 3 + 5) + 4 + (2 + 3 + 2) < alone.input_ids.numel() == 37
    assert shared.loss_tokens == alone.loss_tokens == 3 + 2 + 4 + 2 + 2 + 1
    with torch.no_grad():
        got, _ = forward_logprobs(model, shared)
        want, _ = forward_logprobs(model, alone)
    for field in ("target_ids", "advantages", "inference_logprobs"):
        assert sorted(getattr(shared, field)[shared.loss_mask].tolist()) == sorted(
            getattr(alone, field)[alone.loss_mask].tolist()
        )
    assert torch.allclose(got[shared.loss_mask].sort().values, want[alone.loss_mask].sort().values, atol=1e-5)
    for name, grad in _gradients(model, [shared]).items():
        assert torch.allclose(grad, _gradients(model, [alone])[name], atol=1e-6), name
