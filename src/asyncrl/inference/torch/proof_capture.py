"""TOPLOC proofs of the engine's generations: the last hidden states of each running row's current chunk.

Each step, the hidden states that produced the step's tokens (the ones the LM head just read, so nothing
is recomputed) and the tokens they produced are written into [rows, chunk_size, H] and [rows, chunk_size]
buffers beside the KV cache, at each row's place in its current chunk; rows move with the cache when
finished ones are compacted. When a row's chunk fills
or its sequence ends, a copy of the chunk goes to the ProofEncoder thread, which does the top-k and the
encoding off the engine's thread.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from asyncrl.toploc.builder import ProofEncoder
from asyncrl.toploc.config import ProofConfig


class ProofCapture:
    def __init__(
        self, n_slots: int, hidden_size: int, dtype: torch.dtype, device: torch.device, config: ProofConfig
    ) -> None:
        self.chunk_size = config.chunk_size
        self.device = device
        self.states = torch.zeros(n_slots, config.chunk_size, hidden_size, dtype=dtype, device=device)
        self.tokens = torch.zeros(n_slots, config.chunk_size, dtype=torch.long, device=device)
        per_position = min(config.per_position, hidden_size)
        self.encoder = ProofEncoder(per_position, (str(dtype).removeprefix("torch."), device.type))

    def record(self, first_row: int, hidden: torch.Tensor, generated: list[int], tokens: list[int]) -> None:
        """Keep `hidden` [R, H]: the states that produced `tokens`, the next token of rows first_row..,
        whose sequences had generated `generated[i]` tokens before it."""
        rows = torch.arange(first_row, first_row + len(generated), device=self.device)
        places = torch.tensor([g % self.chunk_size for g in generated], device=self.device)
        self.states[rows, places] = hidden
        self.tokens[rows, places] = torch.tensor(tokens, device=self.device)

    def finish(self, chunks: list[tuple[int, int, list[str]]]) -> None:
        """Send the chunks of rows that just filled one or ended, as (row, tokens in the chunk, where its
        proof goes), to be proved."""
        rows, lengths, sinks = zip(*chunks, strict=True)
        picked = torch.tensor(rows, device=self.device)
        # The encoder's thread works on host copies; the picked chunks are copies already, so the engine
        # may overwrite its buffers at once.
        states, tokens = self.states[picked].cpu(), self.tokens[picked].cpu()
        self.encoder.submit(states, tokens, torch.tensor(lengths), list(sinks))

    def move_row(self, src: int, dst: int) -> None:
        self.states[dst] = self.states[src]
        self.tokens[dst] = self.tokens[src]

    def then(self, callback: Callable[[], None]) -> None:
        """Run `callback` once every chunk sent so far is proved."""
        self.encoder.then(callback)

    def close(self) -> None:
        self.encoder.close()
