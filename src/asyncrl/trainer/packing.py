"""Packing samples into micro-batches up to a token budget, with no attention across sample boundaries.

Samples are laid end to end in one row; position ids restart at each sample and a 4-D block-causal
boolean mask stops attention at the boundaries (restarting positions alone does not isolate them in
transformers' attention). Per-token training targets are shifted by one: position i predicts token i+1
of the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asyncrl.run_dir import Sample


@dataclass
class MicroBatch:
    input_ids: torch.Tensor
    """[1, T] tokens of the packed samples."""
    position_ids: torch.Tensor
    """[1, T] positions, restarting at 0 for every sample."""
    attention_mask: torch.Tensor
    """[1, 1, T, T] boolean block-causal mask: True where attention is allowed."""
    target_ids: torch.Tensor
    """[T] the token each position predicts (0 where it predicts nothing)."""
    loss_mask: torch.Tensor
    """[T] True where the predicted token is a trained (model-generated) token."""
    advantages: torch.Tensor
    inference_logprobs: torch.Tensor
    temperatures: torch.Tensor
    """[T] sampling temperature of each position's sample."""
    sample_ids: torch.Tensor
    """[T] index of each position's sample within this micro-batch."""

    @property
    def loss_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def to(self, device: torch.device) -> MicroBatch:
        return MicroBatch(**{name: t.to(device) for name, t in vars(self).items()})


def assign_bins(lengths: list[int], budget: int) -> list[list[int]]:
    """First-fit decreasing: sample indices grouped so each group's total length fits `budget` (a sample
    longer than the budget gets a group of its own). Deterministic for the same lengths."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(budget - lengths[i])
    return bins


def pack(samples: list[Sample]) -> MicroBatch:
    """One micro-batch from `samples`, laid end to end."""
    ids, positions, targets, mask, adv, inf_lp, temps, sample_ids = ([] for _ in range(8))
    for k, s in enumerate(samples):
        n = len(s.input_ids)
        ids += s.input_ids
        positions += range(n)
        targets += s.input_ids[1:] + [0]
        mask += s.loss_mask[1:] + [False]
        adv += s.advantages[1:] + [0.0]
        inf_lp += s.inference_logprobs[1:] + [0.0]
        temps += [s.temperature] * n
        sample_ids += [k] * n
    sample_of = torch.tensor(sample_ids)
    total = len(ids)
    causal = torch.ones(total, total, dtype=torch.bool).tril()
    same_sample = sample_of.unsqueeze(0) == sample_of.unsqueeze(1)
    return MicroBatch(
        input_ids=torch.tensor([ids]),
        position_ids=torch.tensor([positions]),
        attention_mask=(causal & same_sample).view(1, 1, total, total),
        target_ids=torch.tensor(targets),
        loss_mask=torch.tensor(mask),
        advantages=torch.tensor(adv, dtype=torch.float32),
        inference_logprobs=torch.tensor(inf_lp, dtype=torch.float32),
        temperatures=torch.tensor(temps, dtype=torch.float32),
        sample_ids=sample_of,
    )


def loss_token_count(samples: list[Sample]) -> int:
    """Tokens a step trains on (a sample's first token is never predicted, so never counts)."""
    return sum(sum(s.loss_mask[1:]) for s in samples)


def _empty_sample() -> Sample:
    return Sample(
        input_ids=[0], loss_mask=[False], advantages=[0.0], inference_logprobs=[0.0], policy_version=0
    )


def micro_batches_for_rank(
    samples: list[Sample], budget: int, rank: int, world_size: int
) -> list[MicroBatch]:
    """This rank's share of the step's micro-batches. Every rank gets the same count (padded with a
    one-token micro-batch that trains nothing), because each forward/backward is a collective under FSDP."""
    bins = assign_bins([len(s.input_ids) for s in samples], budget)
    per_rank = -(-len(bins) // world_size)
    mine = bins[rank::world_size]
    batches = [pack([samples[i] for i in sorted(group)]) for group in mine]
    batches += [pack([_empty_sample()]) for _ in range(per_rank - len(mine))]
    return batches
