"""The contract between the HTTP server and an engine, so the torch engine and vLLM are interchangeable.

The server speaks tokens to a backend: it tokenizes prompts, hands over token ids and sampling settings,
and receives generated token ids with their logprobs and the policy version of every token.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field


class WeightUpdateError(Exception):
    """New weights could not be loaded; the old weights keep serving."""


class InvalidRequestError(ValueError):
    """The request cannot be served as asked (answered 400)."""


class EngineDeadError(Exception):
    """The engine loop crashed; the server answers 503 until it is restarted."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    """0 means greedy."""
    top_p: float = 1.0
    seed: int | None = None
    top_logprobs: int = 0
    """How many alternatives to return per token (0: none)."""
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    """Ids that end a sequence (the model's EOS ids), unless `ignore_eos`."""
    ignore_eos: bool = False
    toploc: bool = False
    """Build TOPLOC proofs of the generated tokens."""
    routed_experts: bool = False
    """Return the experts each MoE layer routed each generated token's producing position to."""


@dataclass
class SequenceDelta:
    """What one choice gained since the last delta; the final one has `finish_reason` set."""

    index: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    policy_versions: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    """"stop" (EOS or a stop string), "length", or "abort"."""
    toploc_proofs: list[str] = field(default_factory=list)
    """Base64 TOPLOC proofs of the chunks completed in this delta, when the request asked for them."""
    routed_experts: list[list[list[int]]] = field(default_factory=list)
    """Per new token, [MoE layer][k] the experts that produced it, when the request asked for them."""


@dataclass
class EngineStats:
    running: int
    waiting: int
    batch_size_mean: float
    """Mean decode batch size since the engine started."""
    kv_cache_usage: float
    """Fraction of allocated KV-cache token slots holding live tokens."""
    tokens_generated: int
    prompt_tokens: int
    requests_finished: int
    policy_version: int
    weight_updates: int
    last_weight_update_s: float
    prefill_s: float | None = None
    """Seconds the engine spent prefilling since it started (None: this backend does not measure it)."""
    decode_s: float | None = None
    """Seconds the engine spent in decode steps since it started (None: not measured)."""
    uptime_s: float | None = None
    """Seconds since the engine started: the rest, beyond prefill and decode, it was idle or swapping."""


class Backend(abc.ABC):
    """An engine that generates from token ids and swaps weights while serving."""

    max_model_len: int
    """Context window: prompt plus completion tokens."""
    max_choices: int
    """Most choices (`n`) one request may ask for."""
    vocab_size: int
    """Rows of the model's embedding: token ids must be below this."""
    policy_version: int
    """Version of the weights now serving."""
    no_routed_experts: str | None = "this backend does not return routed experts"
    """Why requests may not ask for `return_routed_experts` here (None: they may)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start generating; returns when ready to serve (the model is loaded at construction)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the engine, aborting what is in flight."""

    @abc.abstractmethod
    def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, n: int = 1, stream: bool = False
    ) -> AsyncIterator[SequenceDelta]:
        """Run `n` choices of one prompt. Yields deltas as tokens arrive when `stream`, otherwise one
        final delta per choice. Closing the iterator early aborts the request."""

    @abc.abstractmethod
    async def update_weights(self, path: str, version: int) -> float:
        """Swap in the weights of an HF dir between decode steps; returns the seconds it took.
        Raises WeightUpdateError (old weights kept) when the dir is missing or of another shape."""

    @abc.abstractmethod
    def stats(self) -> EngineStats:
        """Figures for /metrics."""


async def merged_streams(
    streams: list[AsyncIterator[SequenceDelta]],
) -> AsyncIterator[tuple[int, SequenceDelta]]:
    """Deltas of several generations as they come, each tagged with its stream's index. Closing this
    iterator closes (and so aborts) all of them."""
    if len(streams) == 1:
        async with aclosing(streams[0]) as only:
            async for delta in only:
                yield 0, delta
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream: AsyncIterator[SequenceDelta]) -> None:
        try:
            async with aclosing(stream):
                async for delta in stream:
                    queue.put_nowait((i, delta))
            queue.put_nowait((i, None))
        except Exception as e:  # noqa: BLE001 - re-raised by the consumer below
            queue.put_nowait((i, e))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            i, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
