"""Building chunk proofs, in batches, on a thread beside the inference engine.

The engine hands over copies of finished chunks' last hidden states and where each proof must go. The
worker takes whatever has piled up, so one top-k and one interpolation (whose 2k numpy rounds cost the
same for one chunk or a hundred) serve them all. Work runs in submission order, so a callback queued
after a chunk (delivering the choice that holds it) runs once its proof is in place.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
from collections.abc import Callable

import torch

from asyncrl.toploc.proof import Precision, encode, position_top_k

log = logging.getLogger("asyncrl.toploc")

BATCH_WINDOW_S = 0.1
"""How long the worker lets chunks gather before encoding, so chunks finishing within it share one batch
and its fixed cost; a finished choice (or a streamed delta) waits up to this long for its proofs. On the
tiny model at 64 sequences, proofs cost 27% of generation with 10 ms batches and about 2% with 100 ms."""


def build_proofs(
    states: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, per_position: int, precision: Precision
) -> list[bytes]:
    """Proofs of the chunks `states` [M, chunk_size, H] that produced `tokens` [M, chunk_size], of which
    row i holds `lengths[i]` real tokens; `precision`: how the states were computed."""
    dims, bits = position_top_k(states, per_position)
    return encode(dims.numpy(), bits.numpy(), tokens.numpy(), lengths.numpy(), precision)


class ProofEncoder:
    def __init__(self, per_position: int, precision: Precision) -> None:
        self.per_position, self.precision = per_position, precision
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="toploc-encoder", daemon=True)
        self._thread.start()

    def submit(
        self, states: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, sinks: list[list[str]]
    ) -> None:
        """Build the proofs of chunks `states` [M, chunk_size, H] that produced `tokens` [M, chunk_size]
        (row i has `lengths[i]` real tokens) and append each, as base64, to its sink."""
        self._inbox.put((states, tokens, lengths, sinks))

    def then(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the worker once everything submitted before it is done."""
        self._inbox.put(callback)

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._inbox.get()
            if isinstance(first, tuple):
                time.sleep(BATCH_WINDOW_S)
            items = [first]
            while not self._inbox.empty():
                items.append(self._inbox.get())
            jobs = [item for item in items if isinstance(item, tuple)]
            if jobs:
                self._encode(jobs)
            for item in items:
                if item is None:
                    return
                if callable(item):
                    self._call(item)

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except RuntimeError:  # the event loop of a client that is gone is closed; serve the others
            log.warning("a finished choice could not be delivered: its event loop is closed")

    def _encode(self, jobs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[str]]]]) -> None:
        states, tokens, lengths = (torch.cat([job[i] for job in jobs]) for i in range(3))
        sinks = [sink for *_, job_sinks in jobs for sink in job_sinks]
        try:
            proofs = build_proofs(states, tokens, lengths, self.per_position, self.precision)
        except Exception:  # noqa: BLE001 - the server must keep serving; the choices go out without proofs
            log.exception("building TOPLOC proofs failed; %d chunk(s) left without a proof", len(sinks))
            return
        for sink, proof in zip(sinks, proofs, strict=True):
            sink.append(base64.b64encode(proof).decode())
