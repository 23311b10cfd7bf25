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

from asyncrl.transport.batches import Batch, Sample


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


def pack(batch: Batch, rows: list[list[int]]) -> MicroBatch:
    """One micro-batch of `rows` (each a list of the batch's sample indices), each row's samples laid end
    to end and right-padded to the longest row, gathered from the flat tensors with tensor ops. Padding
    tokens attend only to themselves and train nothing."""
    order = torch.tensor([i for row in rows for i in row], dtype=torch.int64)
    lengths = batch.sample_lengths[order]
    total = int(lengths.sum())
    token = torch.arange(total)
    sample = torch.repeat_interleave(torch.arange(len(order)), lengths)  # each token's sample, 0..k-1
    within = token - (lengths.cumsum(0) - lengths)[sample]  # its position in that sample
    source = batch.starts[order][sample] + within  # its place in the batch's flat tensors
    last = within == lengths[sample] - 1  # predicts nothing: the next token is another sample's
    following = (source + 1).clamp(max=max(0, len(batch.input_ids) - 1))
    row_lengths = torch.tensor([int(batch.sample_lengths[row].sum()) for row in rows])
    width = int(row_lengths.max())
    row = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor([len(r) for r in rows]))[sample]
    place = row * width + token - (row_lengths.cumsum(0) - row_lengths)[row]
    size = len(rows) * width

    def laid(values: torch.Tensor, pad: float | int | bool) -> torch.Tensor:
        out = torch.full((size,), pad, dtype=values.dtype)
        out[place] = values
        return out

    segment = -1 - torch.arange(size)  # each padding position a segment of its own
    segment[place] = sample
    segment = segment.view(len(rows), width)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    same_segment = segment.unsqueeze(1) == segment.unsqueeze(2)
    return MicroBatch(
        input_ids=laid(batch.input_ids[source], 0).view(len(rows), width),
        position_ids=laid(within, 0).view(len(rows), width),
        attention_mask=(causal & same_segment).unsqueeze(1),
        target_ids=laid(batch.input_ids[following].masked_fill(last, 0), 0),
        loss_mask=laid(batch.loss_mask[following] & ~last, False),
        advantages=laid(batch.advantages[following].masked_fill(last, 0.0), 0.0),
        inference_logprobs=laid(batch.inference_logprobs[following].masked_fill(last, 0.0), 0.0),
        temperatures=laid(batch.temperatures[order][sample], 1.0),
        sample_ids=laid(sample, 0),  # padding may name any sample: it is outside the loss mask
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


def loss_token_count(batch: Batch) -> int:
    """Tokens a step trains on (a sample's first token is never predicted, so never counts)."""
    first = batch.starts[batch.sample_lengths > 0]
    return int(batch.loss_mask.sum()) - int(batch.loss_mask[first].sum())


EMPTY = Batch.from_samples(
    [Sample(input_ids=[0], loss_mask=[False], advantages=[0.0], inference_logprobs=[0.0], policy_version=0)]
)
"""One token that trains nothing: what a rank with fewer micro-batches than the others packs."""


def micro_batches_for_rank(
    batch: Batch, row_tokens: int, budget: int, rank: int, world_size: int
) -> list[MicroBatch]:
    """This rank's share of the step's micro-batches: samples packed into rows of `row_tokens`, rows
    stacked up to `budget` tokens. Every rank gets the same count (padded with a one-token micro-batch
    that trains nothing), because each forward/backward is a collective under FSDP."""
    lengths = batch.sample_lengths.tolist()
    rows = [sorted(b) for b in assign_bins(lengths, row_tokens)]
    groups = group_rows([sum(lengths[i] for i in row) for row in rows], budget)
    per_rank = -(-len(groups) // world_size)
    mine = groups[rank::world_size]
    batches = [pack(batch, [rows[i] for i in group]) for group in mine]
    batches += [pack(EMPTY, [[0]]) for _ in range(per_rank - len(mine))]
    return batches
