"""The built-in torch engine: continuous batching on one thread, talking to asyncio through queues.

Each loop iteration: take in new requests, aborts and weight swaps; swap weights if one is pending
(between steps, so in-flight sequences continue under the new policy); prefill waiting requests up to a
token budget; run one decode step for every running sequence; retire finished ones; deliver deltas.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import torch

from asyncrl.devices import resolve_device
from asyncrl.inference.backend import (
    Backend,
    EngineDeadError,
    EngineStats,
    InvalidRequestError,
    SamplingParams,
    SequenceDelta,
)
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.torch.model_runner import ModelRunner
from asyncrl.inference.torch.proof_capture import ProofCapture
from asyncrl.inference.torch.sampling import sample
from asyncrl.inference.weights import WeightReader
from asyncrl.models import DTYPES, load_model, load_tokenizer

IDLE_POLL_S = 0.5
logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request:
    prompt: list[int]
    params: SamplingParams
    n: int
    stream: bool
    loop: asyncio.AbstractEventLoop
    deltas: asyncio.Queue
    aborted: bool = False


@dataclass(eq=False)
class _Sequence:
    request: _Request
    index: int
    cache_len: int
    """Tokens whose keys/values are in the cache; the last sampled token is not yet among them."""
    generator: torch.Generator | None
    last_token: int = -1
    delta: SequenceDelta = field(init=False)
    token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.delta = SequenceDelta(index=self.index)


@dataclass(eq=False)
class _WeightSwap:
    tensors: dict[str, torch.Tensor]
    version: int
    done: asyncio.Future
    loop: asyncio.AbstractEventLoop


class TorchEngine(Backend):
    def __init__(self, model_path: str, dtype: str, config: InferenceConfig, seed: int = 0) -> None:
        self.model_path = model_path
        self.dtype = DTYPES[dtype]
        self.config = config
        self.seed = seed
        self.policy_version = 0
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._waiting: deque[_Request] = deque()
        self._running: list[_Sequence] = []
        self._admitting: list[_Request] = []
        """Taken off the queue, not yet running: a crash during their prefill must still fail them."""
        self._thread: threading.Thread | None = None
        self._dead: BaseException | None = None
        self._counters = dict.fromkeys(
            ("tokens", "prompt_tokens", "finished", "decode_steps", "decode_rows", "weight_updates"), 0
        )
        self._last_weight_update_s = 0.0
        self._seconds = {"prefill": 0.0, "decode": 0.0}
        self._started = time.perf_counter()
        self._toploc = config.toploc
        self._proofs: ProofCapture | None = None
        """Made when the first sequence asks for TOPLOC proofs."""
        self._load()

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="torch-engine", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        self.device = resolve_device(self.config.device, setting="inference.device")
        self.model = load_model(self.model_path, dtype=self.dtype).to(self.device)
        self._weights = WeightReader(self.model)
        self.tokenizer = load_tokenizer(self.model_path)
        limit = self.model.config.max_position_embeddings
        self.max_model_len = min(self.config.max_model_len or limit, limit)
        self.max_choices = self.config.max_num_seqs
        self.vocab_size = self.model.config.vocab_size
        self.runner = ModelRunner(self.model, self.max_model_len, self.config.max_num_seqs)
        if self.runner.moe is not None:
            self.no_routed_experts = None
        else:
            self.no_routed_experts = f"{self.model_path} is a dense model: it has no experts to route to"
        self._generator = torch.Generator(self.device).manual_seed(self.seed)
        logger.info("torch engine: %s on %s in %s", self.model_path, self.device, self.model.dtype)

    async def stop(self) -> None:
        if self._thread is not None:
            self._inbox.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._proofs is not None:
            await asyncio.to_thread(self._proofs.close)
            self._proofs = None

    # -- asyncio side ---------------------------------------------------------------------------------

    async def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, n: int = 1, stream: bool = False
    ) -> AsyncIterator[SequenceDelta]:
        if n > self.config.max_num_seqs:
            raise InvalidRequestError(f"n={n} exceeds inference.max_num_seqs={self.config.max_num_seqs}")
        request = _Request(
            list(prompt_token_ids), params, n, stream, asyncio.get_running_loop(), asyncio.Queue()
        )
        self._submit(request)
        finished = 0
        try:
            while finished < n:
                delta = await request.deltas.get()
                if isinstance(delta, BaseException):
                    raise delta
                finished += delta.finish_reason is not None
                yield delta
        finally:
            if finished < n:
                request.aborted = True
                self._inbox.put(request)

    async def update_weights(self, path: str, version: int) -> float:
        start = time.perf_counter()
        tensors = await asyncio.to_thread(self._weights.read, path)
        loop = asyncio.get_running_loop()
        swap = _WeightSwap(tensors, version, loop.create_future(), loop)
        self._submit(swap)
        await swap.done
        elapsed = time.perf_counter() - start
        self._last_weight_update_s = elapsed
        return elapsed

    def stats(self) -> EngineStats:
        self._check_alive()
        c = self._counters
        live = sum(s.cache_len for s in list(self._running))
        capacity = self.runner.cache.capacity * self.runner.cache.n_slots
        return EngineStats(
            running=len(self._running),
            waiting=sum(r.n for r in list(self._waiting)),
            batch_size_mean=c["decode_rows"] / max(1, c["decode_steps"]),
            kv_cache_usage=live / capacity,
            tokens_generated=c["tokens"],
            prompt_tokens=c["prompt_tokens"],
            requests_finished=c["finished"],
            policy_version=self.policy_version,
            weight_updates=c["weight_updates"],
            last_weight_update_s=self._last_weight_update_s,
            prefill_s=self._seconds["prefill"],
            decode_s=self._seconds["decode"],
            uptime_s=time.perf_counter() - self._started,
        )

    def _check_alive(self) -> None:
        if self._dead is not None:
            raise EngineDeadError(f"the engine is down ({self._dead!r}); restart the server")
        if self._thread is None:
            raise EngineDeadError("the engine is not running")

    def _submit(self, item: _Request | _WeightSwap) -> None:
        """Queue work for the engine thread. Checked again after queueing: had the engine died in
        between, its final drain of the queue may have missed this item, and nobody would answer it."""
        self._check_alive()
        self._inbox.put(item)
        self._check_alive()

    # -- engine thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                self._loop()
        except BaseException as e:  # noqa: BLE001 - every waiting client must hear of the crash
            self._dead = e
            self._fail_all(EngineDeadError(f"the engine crashed: {e!r}"))
            raise
        self._dead = EngineDeadError("the engine was stopped")
        self._fail_all(self._dead)

    def _loop(self) -> None:
        while self._take_inbox():
            start = time.perf_counter()
            self._admit()
            admitted = time.perf_counter()
            if self._running:
                self._decode()
            self._seconds["prefill"] += admitted - start
            self._seconds["decode"] += time.perf_counter() - admitted

    def _take_inbox(self) -> bool:
        """Apply everything queued; block while idle. False when asked to stop."""
        idle = not self._running and not self._waiting
        while True:
            try:
                item = self._inbox.get(timeout=IDLE_POLL_S) if idle else self._inbox.get_nowait()
            except queue.Empty:
                if idle:
                    continue
                return True
            idle = False
            if item is None:
                return False
            if isinstance(item, _WeightSwap):
                self._swap_weights(item)
            elif item.aborted:
                self._abort(item)
            else:
                self._waiting.append(item)

    def _swap_weights(self, swap: _WeightSwap) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in swap.tensors.items():
                params[name].copy_(tensor)
        self.policy_version = swap.version
        self._counters["weight_updates"] += 1
        swap.loop.call_soon_threadsafe(swap.done.set_result, None)

    def _abort(self, request: _Request) -> None:
        if request in self._waiting:
            self._waiting.remove(request)
        self._retire([i for i, s in enumerate(self._running) if s.request is request])

    def _admit(self) -> None:
        """Prefill waiting requests that fit in free rows and the prefill token budget. Prompts are padded
        to the longest one, so the budget is charged rows x longest (a lone long prompt always fits)."""
        rows_free = self.config.max_num_seqs - len(self._running)
        longest = 0
        while self._waiting and self._waiting[0].n <= rows_free:
            candidate = max(longest, len(self._waiting[0].prompt))
            if self._admitting and (len(self._admitting) + 1) * candidate > self.config.max_prefill_tokens:
                break
            request = self._waiting.popleft()
            self._admitting.append(request)
            rows_free -= request.n
            longest = candidate
        if self._admitting:
            self._prefill(self._admitting)
            self._admitting = []

    def _prefill(self, requests: list[_Request]) -> None:
        # Requests with the same prompt (the rollouts of one group arrive together) share one prefill row,
        # as the choices of one request do: the first choice of a prompt lives in its prefill row, every
        # further one gets a copy of that row's cache.
        first_row = len(self._running)
        rows: dict[tuple[int, ...], int] = {}
        for request in requests:
            rows.setdefault(tuple(request.prompt), len(rows))
        lengths = [len(prompt) for prompt in rows]
        tokens = torch.zeros(len(rows), max(lengths), dtype=torch.long)
        for row, prompt in enumerate(rows):
            tokens[row, : lengths[row]] = torch.tensor(prompt)
        width = tokens.shape[1]
        tokens = tokens.to(self.device, non_blocking=True)
        positions = torch.arange(width, device=self.device).expand_as(tokens)
        last = torch.tensor(lengths, device=self.device) - 1
        logits, hidden, routed = self.runner.forward(tokens, positions, first_row, last, attn_len=width)
        self._counters["prompt_tokens"] += sum(len(r.prompt) for r in requests)

        in_place: list[_Sequence | None] = [None] * len(rows)
        copies: list[_Sequence] = []
        source_rows = list(range(len(rows)))
        for request in requests:
            row = rows[tuple(request.prompt)]
            for index in range(request.n):
                if in_place[row] is None:
                    in_place[row] = self._new_sequence(request, index)
                    continue
                self.runner.cache.move_row(first_row + row, first_row + len(rows) + len(copies), lengths[row])
                copies.append(self._new_sequence(request, index))
                source_rows.append(row)
        new = [s for s in in_place if s is not None] + copies
        self._running.extend(new)
        routed = routed[source_rows] if routed is not None else None
        self._sample_and_append(new, logits[source_rows], hidden[source_rows], first_row, routed)

    def _new_sequence(self, request: _Request, index: int) -> _Sequence:
        seed = request.params.seed
        # Any int seed works: the per-choice seed is folded into torch's 64-bit seed range.
        generator = None
        if seed is not None:
            generator = torch.Generator(self.device).manual_seed((seed * 7919 + index) % 2**63)
        return _Sequence(request, index, cache_len=len(request.prompt), generator=generator)

    def _decode(self) -> None:
        rows = self._running
        lengths = [s.cache_len for s in rows]
        tokens = torch.tensor([s.last_token for s in rows], device=self.device).unsqueeze(1)
        positions = torch.tensor(lengths, device=self.device).unsqueeze(1)
        last = torch.zeros(len(rows), dtype=torch.long, device=self.device)
        logits, hidden, routed = self.runner.forward(tokens, positions, 0, last, attn_len=max(lengths) + 1)
        for s in rows:
            s.cache_len += 1
        self._counters["decode_steps"] += 1
        self._counters["decode_rows"] += len(rows)
        self._sample_and_append(rows, logits, hidden, 0, routed)

    def _sample_and_append(
        self,
        seqs: list[_Sequence],
        logits: torch.Tensor,
        hidden: torch.Tensor,
        first_row: int,
        routed: torch.Tensor | None,
    ) -> None:
        params = [s.request.params for s in seqs]
        proofs = self._proofs_for(params)
        chunks_done: list[tuple[int, int, list[str]]] = []
        top_k = max(p.top_logprobs for p in params)
        out = sample(
            logits,
            [p.temperature for p in params],
            [p.top_p for p in params],
            [s.generator for s in seqs],
            self._generator,
            top_k,
        )
        token_ids = out.token_ids.tolist()  # the step's one wait on the device: its tokens must come back
        if proofs is not None:
            proofs.record(first_row, hidden, [len(s.token_ids) for s in seqs], token_ids)
        logprobs = out.logprobs.tolist()
        top_ids = out.top_ids.tolist() if out.top_ids is not None else None
        top_values = out.top_logprobs.tolist() if out.top_logprobs is not None else None
        experts = routed.tolist() if routed is not None and any(p.routed_experts for p in params) else None
        finished: list[int] = []
        for row, (s, token, p) in enumerate(zip(seqs, token_ids, params, strict=True)):
            s.last_token = token
            s.token_ids.append(token)
            s.delta.token_ids.append(token)
            s.delta.logprobs.append(logprobs[row])
            s.delta.policy_versions.append(self.policy_version)
            if p.top_logprobs and top_ids is not None and top_values is not None:
                pairs = zip(top_ids[row][: p.top_logprobs], top_values[row][: p.top_logprobs], strict=True)
                s.delta.top_logprobs.append(list(pairs))
            if p.routed_experts and experts is not None:
                s.delta.routed_experts.append(experts[row])
            s.delta.finish_reason = self._finish_reason(s, token)
            if s.delta.finish_reason is not None:
                finished.append(first_row + row)
            if p.toploc and (len(s.token_ids) % self._toploc.chunk_size == 0 or s.delta.finish_reason):
                in_chunk = (len(s.token_ids) - 1) % self._toploc.chunk_size + 1
                chunks_done.append((first_row + row, in_chunk, s.delta.toploc_proofs))
        if proofs is not None and chunks_done:
            proofs.finish(chunks_done)
        self._counters["tokens"] += len(seqs)
        stepped = list(seqs)  # `seqs` may be the running list itself, which retiring reorders
        self._retire(finished)  # before delivering, so a client that hears "finished" sees it gone
        self._deliver(stepped)

    def _proofs_for(self, params: list[SamplingParams]) -> ProofCapture | None:
        """The proof capture, made on first use, when any of these rows wants proofs; else None."""
        if not any(p.toploc for p in params):
            return None
        if self._proofs is None:
            hidden_size = self.model.config.hidden_size
            self._proofs = ProofCapture(
                self.config.max_num_seqs, hidden_size, self.dtype, self.device, self._toploc
            )
        return self._proofs

    def _finish_reason(self, s: _Sequence, token: int) -> str | None:
        p = s.request.params
        if token in p.stop_token_ids and not p.ignore_eos:
            return "stop"
        if p.stop:
            # A character is at most 4 UTF-8 bytes and a token at least one, so this window holds any stop.
            window_tokens = 4 * max(map(len, p.stop)) + 8
            window = self.tokenizer.decode(s.token_ids[-window_tokens:], skip_special_tokens=True)
            if any(stop in window for stop in p.stop):
                return "stop"
        if len(s.token_ids) >= p.max_tokens or s.cache_len + 1 >= self.max_model_len:
            return "length"
        return None

    def _deliver(self, seqs: list[_Sequence]) -> None:
        """Hand finished choices (and, when streaming, every new token) to their requests' queues."""
        ready = [s for s in seqs if s.request.stream or s.delta.finish_reason is not None]
        if not ready:
            return
        by_loop: dict[tuple[asyncio.AbstractEventLoop, bool], list[tuple[asyncio.Queue, SequenceDelta]]] = {}
        for s in ready:
            by_loop.setdefault((s.request.loop, s.request.params.toploc), []).append(
                (s.request.deltas, s.delta)
            )
            s.delta = SequenceDelta(index=s.index)
        for (loop, proving), items in by_loop.items():
            put = functools.partial(loop.call_soon_threadsafe, _put_all, items)
            if proving and self._proofs is not None:
                self._proofs.then(put)  # once the proofs of the chunks these deltas hold are built
            else:
                put()

    def _retire(self, rows: list[int]) -> None:
        """Drop finished rows, moving the last running row into each freed one to keep rows dense."""
        for row in sorted(rows, reverse=True):
            last = len(self._running) - 1
            if row != last:
                self.runner.cache.move_row(last, row, self._running[last].cache_len)
                if self._proofs is not None:
                    self._proofs.move_row(last, row)
                self._running[row] = self._running[last]
            self._running.pop()
            self._counters["finished"] += 1

    def _fail_all(self, error: Exception) -> None:
        requests = {s.request for s in self._running} | set(self._waiting) | set(self._admitting)
        self._running.clear()
        self._waiting.clear()
        self._admitting.clear()
        for request in requests:
            request.loop.call_soon_threadsafe(request.deltas.put_nowait, error)
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _WeightSwap):
                item.loop.call_soon_threadsafe(item.done.set_exception, error)
            elif isinstance(item, _Request):
                item.loop.call_soon_threadsafe(item.deltas.put_nowait, error)


def _put_all(items: list[tuple[asyncio.Queue, SequenceDelta]]) -> None:
    for deltas, delta in items:
        deltas.put_nowait(delta)
