"""TOPLOC proofs of the engine's generations: the last hidden states of each running row's current chunk.

Each step, the hidden states that produced the step's tokens (the ones the LM head just read, so nothing
is recomputed) are written into a [rows, chunk_size, H] buffer beside the KV cache, at each row's place
in its current chunk; rows move with the cache when finished ones are compacted. When a row's chunk fills
or its sequence ends, a copy of the chunk goes to the ProofEncoder thread, which does the top-k and the
encoding off the engine's thread.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from asyncrl.toploc.builder import ProofEncoder
from asyncrl.toploc.config import ProofConfig


class ProofCapture:
    def __init__(self, n_slots: int, hidden_size: int, dtype: torch.dtype, config: ProofConfig) -> None:
        self.chunk_size = config.chunk_size
        self.states = torch.zeros(n_slots, config.chunk_size, hidden_size, dtype=dtype)
        self.encoder = ProofEncoder(min(config.top_k, hidden_size))

    def record(self, first_row: int, hidden: torch.Tensor, generated: list[int]) -> None:
        """Keep `hidden` [R, H]: the states that produced the next token of rows first_row.., whose
        sequences had generated `generated[i]` tokens before it."""
        rows = torch.arange(first_row, first_row + len(generated))
        self.states[rows, torch.tensor(generated) % self.chunk_size] = hidden

    def finish(self, chunks: list[tuple[int, int, list[str]]]) -> None:
        """Send the chunks of rows that just filled one or ended, as (row, tokens in the chunk, where its
        proof goes), to be proved."""
        rows, lengths, sinks = zip(*chunks, strict=True)
        self.encoder.submit(self.states[torch.tensor(rows)], torch.tensor(lengths), list(sinks))

    def move_row(self, src: int, dst: int) -> None:
        self.states[dst] = self.states[src]

    def then(self, callback: Callable[[], None]) -> None:
        """Run `callback` once every chunk sent so far is proved."""
        self.encoder.then(callback)

    def close(self) -> None:
        self.encoder.close()
