"""The vLLM backend: asyncrl's HTTP server in front, a vLLM server behind it as a child process.

asyncrl's server keeps the whole contract (OpenAI routes, validation and errors, `return_token_ids`,
logprobs, policy versions, `/update_weights`, `/metrics`), so clients cannot tell the backends apart; vLLM
only generates, token ids in and out, through `/inference/v1/generate`. New weights load while requests
are in flight: generation is paused with every request kept, the weights dir is reloaded in place, the new
version becomes vLLM's weight label, and generation resumes. Every token's policy version is exact: vLLM
records the label each token was generated under, and streamed tokens are split where each request stood
when generation paused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

import httpx
from transformers import AutoConfig

from asyncrl.inference.backend import (
    Backend,
    EngineDeadError,
    EngineStats,
    InvalidRequestError,
    SamplingParams,
    SequenceDelta,
    merged_streams,
)
from asyncrl.inference.config import InferenceServerConfig
from asyncrl.inference.vllm.launch import LENGTHS_METHOD, RELOAD_METHOD, VLLMProcessError, build_launch
from asyncrl.inference.vllm.metrics import VLLMFigures, read_figures
from asyncrl.inference.vllm.process import VLLMProcess
from asyncrl.inference.vllm.weights import AdapterMerges, check_same_model, tensor_shapes
from asyncrl.inference.vllm.wire import (
    GENERATE_ROUTE,
    StreamLabels,
    choice_delta,
    generate_body,
    generated_by,
    merged_choice,
    new_request_id,
    span_versions,
    stream_events,
)

log = logging.getLogger("asyncrl.inference")
# httpx logs every request at INFO: one line per generation would bury the server's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)

FIGURES_EVERY_S = 1.0
WATCH_EVERY_S = 0.5


class VLLMBackend(Backend):
    """Generates with a vLLM server it starts; see the module doc."""

    no_routed_experts = (
        "the vLLM backend does not return routed experts (vLLM captures them only in its Model Runner V2, "
        "which needs Triton: its CPU build refuses --enable-return-routed-experts); serve MoE models with "
        'inference.backend = "torch" for router replay'
    )

    def __init__(self, config: InferenceServerConfig, model_dir: Path, log: TextIO | None = None) -> None:
        text_config = AutoConfig.from_pretrained(model_dir).get_text_config()
        limit = text_config.max_position_embeddings
        self.max_model_len = min(config.inference.max_model_len or limit, limit)
        self.max_choices = config.inference.max_num_seqs
        self.vocab_size = text_config.vocab_size
        self.policy_version = 0
        self.nccl = config.inference.vllm.weight_transfer == "nccl"
        self._served_shapes = tensor_shapes(model_dir)
        self._merges = AdapterMerges(model_dir)
        self._process = VLLMProcess(build_launch(config, model_dir, self.max_model_len), log)
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task] = []
        self._figures = VLLMFigures()
        self._weights_lock = asyncio.Lock()
        self._streams: dict[str, StreamLabels] = {}
        """Streamed choices in flight, by request id."""
        self._in_flight = 0
        """Choices asked of vLLM and not yet answered (or abandoned): a live count, where vLLM's own
        figures are read once a second."""
        self._weight_updates = 0
        self._last_weight_update_s = 0.0
        self.failure: str | None = None
        """Why vLLM stopped while serving, once it has."""
        self.stop_serving: Callable[[], None] | None = None
        """Called when vLLM dies while serving: stops the HTTP server (serve sets it)."""

    @classmethod
    @contextmanager
    def launched(
        cls, config: InferenceServerConfig, model_dir: Path, log: TextIO | None = None
    ) -> Iterator[VLLMBackend]:
        """Start vLLM (returns once it serves) and stop it on exit; raises VLLMProcessError with vLLM's
        own output when it fails to start or dies while serving. vLLM's log goes to `log` (stdout)."""
        backend = cls(config, model_dir, log)
        backend._process.start()
        try:
            yield backend
        finally:
            backend._process.stop()
        if backend.failure:
            raise VLLMProcessError(backend.failure)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self._process.url,
            # A long generation is one long request; only connecting should be quick.
            timeout=httpx.Timeout(None, connect=30.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        )
        await self._call("/update_weight_version", json={"new_version": str(self.policy_version)})
        self._tasks = [asyncio.create_task(self._read_figures()), asyncio.create_task(self._watch())]
        log.info("vLLM serves behind this server at %s", self._process.url)
        if self.nccl:
            log.info("vLLM's NCCL weight-transfer routes (/init_weight_transfer_engine, ...): %s",
                     self._process.url)  # fmt: skip

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await asyncio.to_thread(self._process.stop)
        self._merges.close()

    async def _watch(self) -> None:
        while not self._process.died():
            await asyncio.sleep(WATCH_EVERY_S)
        self.failure = (
            f"vLLM stopped while serving (exit code {self._process.exit_code()}):\n{self._process.tail()}"
        )
        log.error(self.failure)
        if self.stop_serving is not None:
            self.stop_serving()  # then VLLMBackend.launched raises the failure

    async def _read_figures(self) -> None:
        assert self._client is not None
        while True:
            with suppress(httpx.HTTPError):
                response = await self._client.get("/metrics")
                if response.status_code == 200:
                    self._figures = read_figures(response.text)
            await asyncio.sleep(FIGURES_EVERY_S)

    def _check_alive(self) -> httpx.AsyncClient:
        if self.failure or self._process.died():
            raise EngineDeadError("vLLM has stopped (its output is in this server's log); restart the server")
        if self._client is None:
            raise EngineDeadError("the vLLM backend is not running")
        return self._client

    # -- generation -----------------------------------------------------------------------------------

    async def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, n: int = 1, stream: bool = False
    ) -> AsyncIterator[SequenceDelta]:
        self._check_alive()
        if params.toploc:
            raise InvalidRequestError(
                "TOPLOC proofs are built by the torch backend only; this server runs vLLM"
            )
        if n > self.max_choices:
            raise InvalidRequestError(f"n={n} exceeds inference.max_num_seqs={self.max_choices}")
        choices = [self._choice(prompt_token_ids, params, i, stream) for i in range(n)]
        async with aclosing(merged_streams(choices)) as deltas:
            async for _, delta in deltas:
                yield delta

    async def _choice(
        self, prompt_token_ids: list[int], params: SamplingParams, index: int, stream: bool
    ) -> AsyncIterator[SequenceDelta]:
        client = self._check_alive()
        request_id = new_request_id()
        body = generate_body(prompt_token_ids, params, index, stream, request_id)
        self._in_flight += 1
        try:
            if not stream:
                version = self.policy_version
                choice = (await _answer(await client.post(GENERATE_ROUTE, json=body)))["choices"][0]
                n_tokens = len(choice.get("token_ids") or [])
                # vLLM's own record of the weights behind each token.
                versions = span_versions(choice.get("weight_versions"), n_tokens, version)
                yield choice_delta(choice, index, params.top_logprobs, versions or [version] * n_tokens, True)
                return
            labels = self._streams[request_id] = StreamLabels([(0, self.policy_version)])
            try:
                async with client.stream("POST", GENERATE_ROUTE, json=body) as response:
                    await _answer(response, streaming=True)
                    async for delta in self._stream_deltas(response, index, params.top_logprobs, labels):
                        yield delta
            finally:
                del self._streams[request_id]
        except httpx.HTTPError as e:
            raise EngineDeadError(f"lost the connection to vLLM: {e!r}") from None
        finally:
            self._in_flight -= 1

    async def _stream_deltas(
        self, response: httpx.Response, index: int, top_k: int, labels: StreamLabels
    ) -> AsyncIterator[SequenceDelta]:
        versions: list[int] = []
        pending = b""
        async for data in response.aiter_bytes():
            # Reading bytes vLLM has already sent does not wait, so without this a fast stream would keep
            # the event loop from every other request (a weight update) until it ends.
            await asyncio.sleep(0)
            events, pending = stream_events(pending + data)
            for event in events:
                if "error" in event:
                    raise EngineDeadError(f"vLLM failed mid-generation: {_error_text(event)}")
            chunks = [choice for event in events for choice in event.get("choices") or []]
            if not chunks:
                continue
            choice = merged_choice(chunks)
            n_tokens = len(choice.get("token_ids") or [])
            delta_versions = labels.label(n_tokens)
            finished = choice.get("finish_reason") is not None
            if finished:
                # vLLM's record of the whole choice comes with its last chunk: that chunk follows it, and
                # the labels of the earlier ones are checked against it.
                exact = span_versions(
                    choice.get("weight_versions"), len(versions) + n_tokens, self.policy_version
                )
                if exact is not None:
                    if exact[: len(versions)] != versions:
                        log.warning("streamed tokens were labelled with policy versions %s where vLLM "
                                    "records %s", sorted(set(versions)), sorted(set(exact)))  # fmt: skip
                    delta_versions = exact[len(versions) :]
            versions += delta_versions
            yield choice_delta(choice, index, top_k, delta_versions, finished)
            if finished:
                return
        raise EngineDeadError("vLLM ended a generation without finishing it")

    # -- weights --------------------------------------------------------------------------------------

    async def update_weights(self, path: str, version: int) -> float:
        self._check_alive()
        started = time.perf_counter()
        path = await asyncio.to_thread(self._merges.whole, path, version)  # an adapter: merged into its base
        # vLLM's engine dies on a reload that fails, so a dir that is not this model never reaches it.
        await asyncio.to_thread(check_same_model, path, self._served_shapes)
        async with self._weights_lock:
            checked = time.perf_counter()
            # "keep": running requests are frozen where they are, not aborted, and continue on resume.
            await self._call("/pause", params={"mode": "keep"})
            try:
                paused = time.perf_counter()
                lengths = (await self._call("/collective_rpc", json={"method": LENGTHS_METHOD}))[0]
                if lengths is None:
                    log.warning(
                        "vLLM's model runner reports no per-request progress: streamed tokens switch "
                        "version where they arrive (non-streamed answers stay exact)"
                    )
                reload = {"method": RELOAD_METHOD, "kwargs": {"weights_path": str(Path(path).resolve())}}
                await self._call("/collective_rpc", json=reload)
                await self._call("/update_weight_version", json={"new_version": str(version)})
                # No await from here to the version switch: a stream that starts later is all new tokens.
                for request_id, labels in self._streams.items():
                    generated = labels.received if lengths is None else generated_by(lengths, request_id)
                    if generated is None and labels.received:
                        continue  # it finished before the pause: what it has yet to deliver is all old
                    labels.switch(generated or 0, version)  # (None: it has not started yet)
                self.policy_version = version
                self._merges.serving(path)
                log.info("weights v%d: checked %.3fs, paused %.3fs, reloaded %.3fs", version,
                         checked - started, paused - checked, time.perf_counter() - paused)  # fmt: skip
            except BaseException:
                with suppress(EngineDeadError):
                    await self._call("/resume")
                raise
            await self._call("/resume")
        elapsed = time.perf_counter() - started
        self._weight_updates += 1
        self._last_weight_update_s = elapsed
        return elapsed

    async def _call(self, route: str, **kwargs: Any) -> Any:
        """POST to one of vLLM's control routes; any failure means vLLM is in no state to serve. Returns
        the `results` of a collective_rpc (one per worker)."""
        client = self._check_alive()
        try:
            response = await client.post(route, **kwargs)
        except httpx.HTTPError as e:
            raise EngineDeadError(f"vLLM {route}: {e!r}") from None
        if response.status_code != 200:
            raise EngineDeadError(f"vLLM {route} failed ({response.status_code}): {response.text[:500]}")
        return response.json().get("results") if route == "/collective_rpc" else None

    def stats(self) -> EngineStats:
        self._check_alive()
        f = self._figures
        waiting = min(int(f.waiting), self._in_flight)
        return EngineStats(
            running=self._in_flight - waiting,
            waiting=waiting,
            batch_size_mean=f.batch_size_mean,
            kv_cache_usage=f.kv_cache_usage,
            tokens_generated=int(f.tokens_generated),
            prompt_tokens=int(f.prompt_tokens),
            requests_finished=int(f.requests_finished),
            policy_version=self.policy_version,
            weight_updates=self._weight_updates,
            last_weight_update_s=self._last_weight_update_s,
        )


async def _answer(response: httpx.Response, streaming: bool = False) -> dict[str, Any]:
    """The JSON of a 200 answer (nothing, for a stream); vLLM's refusal as InvalidRequestError (4xx) or
    EngineDeadError (5xx) otherwise."""
    if response.status_code == 200:
        return {} if streaming else response.json()
    await response.aread()
    try:
        message = _error_text(response.json())
    except ValueError:
        message = response.text[:500]
    if 400 <= response.status_code < 500:
        raise InvalidRequestError(f"vLLM refused the request: {message}")
    raise EngineDeadError(f"vLLM failed ({response.status_code}): {message}")


def _error_text(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error or body)
