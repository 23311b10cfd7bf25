"""Packing samples into micro-batches up to a token budget, with no attention across sample boundaries.

Samples are laid end to end in rows of at most `row_tokens`; position ids restart at each sample and a
4-D block-causal boolean mask stops attention at the boundaries (restarting positions alone does not
isolate them in transformers' attention). Rows are stacked into a micro-batch of at most
`micro_batch_tokens`: attention costs rows x row_tokens^2, not (rows x row_tokens)^2. Per-token training
targets are shifted by one: position i predicts token i+1 of the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asyncrl.transport.batches import Sample


@dataclass
class MicroBatch:
    input_ids: torch.Tensor
    """[R, L] tokens: R rows of packed samples, right-padded to the longest row."""
    position_ids: torch.Tensor
    """[R, L] positions, restarting at 0 for every sample."""
    attention_mask: torch.Tensor
    """[R, 1, L, L] boolean block-causal mask: True where attention is allowed."""
    target_ids: torch.Tensor
    """[R*L] the token each position predicts (0 where it predicts nothing); the rest are [R*L] too."""
    loss_mask: torch.Tensor
    """True where the predicted token is a trained (model-generated) token."""
    advantages: torch.Tensor
    inference_logprobs: torch.Tensor
    temperatures: torch.Tensor
    """Sampling temperature of each position's sample."""
    sample_ids: torch.Tensor
    """Index of each position's sample within this micro-batch."""

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


def pack(rows: list[list[Sample]]) -> MicroBatch:
    """One micro-batch of `rows`, each row's samples laid end to end and right-padded to the longest row.
    Padding tokens attend only to themselves and train nothing."""
    width = max(sum(len(s.input_ids) for s in row) for row in rows)
    ids, positions, targets, mask, adv, inf_lp, temps, sample_ids, segments = ([] for _ in range(9))
    k = 0
    for row in rows:
        row_segments: list[int] = []
        for s in row:
            n = len(s.input_ids)
            ids += s.input_ids
            positions += range(n)
            targets += s.input_ids[1:] + [0]
            mask += s.loss_mask[1:] + [False]
            adv += s.advantages[1:] + [0.0]
            inf_lp += s.inference_logprobs[1:] + [0.0]
            temps += [s.temperature] * n
            sample_ids += [k] * n
            row_segments += [k] * n
            k += 1
        pad = width - len(row_segments)
        ids += [0] * pad
        positions += [0] * pad
        targets += [0] * pad
        mask += [False] * pad
        adv += [0.0] * pad
        inf_lp += [0.0] * pad
        temps += [1.0] * pad
        sample_ids += [0] * pad  # any valid index: padding is outside the loss mask
        segments.append(row_segments + [-1 - i for i in range(pad)])  # a segment of its own per pad
    segment = torch.tensor(segments)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    same_segment = segment.unsqueeze(1) == segment.unsqueeze(2)
    return MicroBatch(
        input_ids=torch.tensor(ids).view(len(rows), width),
        position_ids=torch.tensor(positions).view(len(rows), width),
        attention_mask=(causal & same_segment).unsqueeze(1),
        target_ids=torch.tensor(targets),
        loss_mask=torch.tensor(mask),
        advantages=torch.tensor(adv, dtype=torch.float32),
        inference_logprobs=torch.tensor(inf_lp, dtype=torch.float32),
        temperatures=torch.tensor(temps, dtype=torch.float32),
        sample_ids=torch.tensor(sample_ids),
    )


def group_rows(row_lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive rows (longest first) grouped so each group's padded size, rows x longest, fits
    `budget` (a row longer than the budget forms a group alone)."""
    order = sorted(range(len(row_lengths)), key=lambda i: (-row_lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * row_lengths[groups[-1][0]] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def loss_token_count(samples: list[Sample]) -> int:
    """Tokens a step trains on (a sample's first token is never predicted, so never counts)."""
    return sum(sum(s.loss_mask[1:]) for s in samples)


def _empty_sample() -> Sample:
    return Sample(
        input_ids=[0], loss_mask=[False], advantages=[0.0], inference_logprobs=[0.0], policy_version=0
    )


def micro_batches_for_rank(
    samples: list[Sample], row_tokens: int, budget: int, rank: int, world_size: int
) -> list[MicroBatch]:
    """This rank's share of the step's micro-batches: samples packed into rows of `row_tokens`, rows
    stacked up to `budget` tokens. Every rank gets the same count (padded with a one-token micro-batch
    that trains nothing), because each forward/backward is a collective under FSDP."""
    rows = [
        [samples[i] for i in sorted(b)] for b in assign_bins([len(s.input_ids) for s in samples], row_tokens)
    ]
    groups = group_rows([sum(len(s.input_ids) for s in row) for row in rows], budget)
    per_rank = -(-len(groups) // world_size)
    mine = groups[rank::world_size]
    batches = [pack([rows[i] for i in group]) for group in mine]
    batches += [pack([[_empty_sample()]]) for _ in range(per_rank - len(mine))]
    return batches
