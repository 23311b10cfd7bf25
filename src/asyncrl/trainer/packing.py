"""Packing samples into micro-batches up to a token budget, with no attention across sample boundaries.

Samples that share a prompt (the rollouts of one group) are laid as one unit: the prompt's tokens once,
then each sample's own tokens as a branch that attends to the prompt and to itself only. The prompt is
then computed, and back-propagated, once for the group rather than once per sample, with the same
logprobs and gradients (each branch repeats the prompt's last token, whose logits predict the branch's
first generated token). Units are laid end to end in rows of at most `row_tokens`; position ids follow
each sample, and per-token unit and branch ids say who may attend to whom (asyncrl.trainer.attention
turns them into masks a block of queries at a time, so nothing of size L^2 is stored). Rows are stacked
into a micro-batch of at most `micro_batch_tokens`: attention costs rows x row_tokens^2, not
(rows x row_tokens)^2. Per-token training targets are shifted by one: position i predicts token i+1 of
the same sample.
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
    unit_ids: torch.Tensor
    """[R, L] the unit (samples sharing a prompt) each token belongs to; every padding token has its own."""
    branch_ids: torch.Tensor
    """[R, L] -1 on a unit's shared prompt tokens, else the token's sample (padding: an id of its own)."""
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
    routed_experts: torch.Tensor | None = None
    """[R*L, MoE layers, k] the experts inference routed each position to when it produced the next token
    (-1 where the next token has no recorded routing: prompts, environment tokens, a sample's end), for
    batches with recorded routing."""

    @property
    def padding(self) -> torch.Tensor:
        """[R*L] True on padding positions (each its own unit, numbered below 0)."""
        return self.unit_ids.flatten() < 0

    @property
    def loss_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def to(self, device: torch.device) -> MicroBatch:
        return MicroBatch(**{name: t.to(device) if t is not None else None for name, t in vars(self).items()})


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


Unit = tuple[int, list[int]]
"""Samples laid together: how many leading tokens they share (0: none), and their indices."""


def prompt_units(batch: Batch) -> list[Unit]:
    """The batch's samples grouped by prompt (the tokens before the first trained one), in batch order;
    the samples of a group share all but the prompt's last token (a sample alone, or a one-token prompt,
    shares nothing)."""
    ids, mask = batch.input_ids.tolist(), batch.loss_mask.tolist()
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (start, length) in enumerate(
        zip(batch.starts.tolist(), batch.sample_lengths.tolist(), strict=True)
    ):
        end = start + length
        first_trained = next((t for t in range(start, end) if mask[t]), end)
        groups.setdefault(tuple(ids[start:first_trained]), []).append(i)
    units: list[Unit] = []
    for prompt, members in groups.items():
        shared = len(prompt) - 1 if len(members) > 1 else 0
        units += [(shared, members)] if shared > 0 else [(0, [i]) for i in members]
    return units


def unit_tokens(unit: Unit, lengths: list[int]) -> int:
    """Tokens a unit takes in a row: the shared ones once, then each sample's rest."""
    shared, members = unit
    return shared + sum(lengths[i] - shared for i in members)


def pack(batch: Batch, rows: list[list[Unit]]) -> MicroBatch:
    """One micro-batch of `rows` (each a list of units of the batch's samples), each row's units laid end
    to end and right-padded to the longest row, gathered from the flat tensors with tensor ops. Padding
    tokens attend only to themselves and train nothing."""
    lengths_all = batch.sample_lengths.tolist()
    # Pieces of tokens laid one after another: a unit's shared prompt, then one branch per sample.
    piece_sample, piece_first, piece_count, piece_unit, piece_branch, piece_row = [], [], [], [], [], []
    local: dict[int, int] = {}  # batch sample index -> its index within this micro-batch
    unit = -1
    for r, row in enumerate(rows):
        for shared, members in row:
            unit += 1
            for m in members:
                local.setdefault(m, len(local))
            pieces = [(members[0], 0, shared, -1)] if shared else []
            pieces += [(m, shared, lengths_all[m] - shared, local[m]) for m in members]
            for sample, first, count, branch in pieces:
                piece_sample.append(sample)
                piece_first.append(first)
                piece_count.append(count)
                piece_unit.append(unit)
                piece_branch.append(branch)
                piece_row.append(r)
    counts = torch.tensor(piece_count)
    piece = torch.repeat_interleave(torch.arange(len(counts)), counts)  # each token's piece
    total = int(counts.sum())
    token = torch.arange(total)
    sample = torch.tensor(piece_sample)[piece]
    within = torch.tensor(piece_first)[piece] + token - (counts.cumsum(0) - counts)[piece]  # place in sample
    lengths = batch.sample_lengths[sample]
    source = batch.starts[sample] + within  # its place in the batch's flat tensors
    last = within == lengths - 1  # predicts nothing: the next token is another sample's
    following = (source + 1).clamp(max=max(0, len(batch.input_ids) - 1))
    row = torch.tensor(piece_row)[piece]
    row_lengths = torch.zeros(len(rows), dtype=torch.int64).index_add(0, row, torch.ones_like(row))
    width = int(row_lengths.max())
    place = row * width + token - (row_lengths.cumsum(0) - row_lengths)[row]
    size = len(rows) * width

    def laid(values: torch.Tensor, pad: float | int | bool) -> torch.Tensor:
        out = torch.full((size, *values.shape[1:]), pad, dtype=values.dtype)
        out[place] = values
        return out

    routed = None
    if batch.routed_experts is not None:
        routed = laid(batch.routed_experts[following].masked_fill(last.view(-1, 1, 1), -1), -1)

    unit = -1 - torch.arange(size)  # each padding position a unit and a branch of its own
    unit[place] = torch.tensor(piece_unit)[piece]
    branch = -2 - torch.arange(size)
    branch[place] = torch.tensor(piece_branch)[piece]
    local_ids = torch.tensor([local[i] for i in piece_sample])[piece]
    return MicroBatch(
        input_ids=laid(batch.input_ids[source], 0).view(len(rows), width),
        position_ids=laid(within, 0).view(len(rows), width),
        unit_ids=unit.view(len(rows), width),
        branch_ids=branch.view(len(rows), width),
        target_ids=laid(batch.input_ids[following].masked_fill(last, 0), 0),
        loss_mask=laid(batch.loss_mask[following] & ~last, False),
        advantages=laid(batch.advantages[following].masked_fill(last, 0.0), 0.0),
        inference_logprobs=laid(batch.inference_logprobs[following].masked_fill(last, 0.0), 0.0),
        temperatures=laid(batch.temperatures[sample], 1.0),
        sample_ids=laid(local_ids, 0),  # padding may name any sample: it is outside the loss mask
        routed_experts=routed,
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
    """This rank's share of the step's micro-batches: units of samples (one prompt's) packed into rows of
    `row_tokens`, rows stacked up to `budget` tokens. Every rank gets the same count (padded with a
    one-token micro-batch that trains nothing), because each forward/backward is a collective under FSDP."""
    lengths = batch.sample_lengths.tolist()
    units = prompt_units(batch)
    sizes = [unit_tokens(unit, lengths) for unit in units]
    bins = [sorted(b) for b in assign_bins(sizes, row_tokens)]
    rows = [[units[i] for i in b] for b in bins]
    groups = group_rows([sum(sizes[i] for i in b) for b in bins], budget)
    per_rank = -(-len(groups) // world_size)
    mine = groups[rank::world_size]
    batches = [pack(batch, [rows[i] for i in group]) for group in mine]
    batches += [pack(EMPTY, [[(0, [0])]]) for _ in range(per_rank - len(mine))]
    return batches
