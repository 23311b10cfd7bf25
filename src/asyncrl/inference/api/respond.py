"""Running a request's generations and answering it: one JSON body, or server-sent events as tokens come.

Closing the answer early (a client that disconnects) closes the generations, which aborts them in the
engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import aclosing
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from asyncrl.inference.api.protocol import APIError, new_id, now
from asyncrl.inference.api.responses import ChoiceShaper, ChoiceState, token_choice, usage
from asyncrl.inference.backend import (
    Backend,
    EngineDeadError,
    InvalidRequestError,
    SamplingParams,
    SequenceDelta,
    merged_streams,
)

log = logging.getLogger("asyncrl.inference")


async def _collect(streams: list[AsyncIterator[SequenceDelta]], states: list[ChoiceState], n: int) -> None:
    async with aclosing(merged_streams(streams)) as deltas:
        async for i, delta in deltas:
            states[i * n + delta.index].add(delta)


async def _unless_disconnected(raw: Request, work: Coroutine[Any, Any, None]) -> bool:
    """Run `work` unless the client disconnects first, in which case cancel it (aborting generation, so
    a timed-out client does not keep the engine busy). True when `work` finished."""

    async def client_gone() -> None:
        while (await raw.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.create_task(work)
    watcher = asyncio.create_task(client_gone())
    done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    if task in done:
        task.result()
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False


async def respond(
    raw: Request,
    backend: Backend,
    shape: ChoiceShaper,
    model_name: str,
    prompts: list[list[int]],
    params: list[SamplingParams],
) -> Response:
    """Generate `request.n` choices for every prompt and answer with one JSON body, or with server-sent
    events as tokens arrive when the request streams."""
    request = shape.request
    kind = "chatcmpl" if shape.chat else "cmpl"
    n = request.n
    streams = [backend.generate(p, sp, n, request.stream) for p, sp in zip(prompts, params, strict=True)]
    stops = params[0].stop
    states = [ChoiceState(index=i * n + j, stops=stops) for i in range(len(prompts)) for j in range(n)]
    prompt_of = [i for i in range(len(prompts)) for _ in range(n)]
    if request.stream:
        events = _stream_events(backend, shape, model_name, prompts, streams, states)
        return StreamingResponse(events, media_type="text/event-stream")
    if not await _generated(raw, streams, states, n):
        return Response(status_code=499)
    version = backend.policy_version
    choices = [shape.full(s, prompts[prompt_of[s.index]], version) for s in states]
    body = {
        "id": new_id(kind),  # type: ignore[arg-type]
        "object": "text_completion" if kind == "cmpl" else "chat.completion",
        "created": now(),
        "model": model_name,
        "choices": choices,
        "usage": usage(sum(map(len, prompts)), sum(len(s.token_ids) for s in states)),
    }
    if shape.chat and request.return_token_ids:
        body["prompt_token_ids"] = prompts[0]  # where vLLM puts it, and verifiers' legacy clients read it
    return JSONResponse(body)


async def respond_tokens(
    raw: Request, backend: Backend, prompt: list[int], params: SamplingParams, n: int, top: int | None
) -> Response:
    """`/inference/v1/generate`: `n` choices of one prompt as token ids, each token's logprob (and `top`
    alternatives) keyed `token_id:<id>`, as renderers reads them."""
    states = [ChoiceState(index=j, stops=params.stop) for j in range(n)]
    if not await _generated(raw, [backend.generate(prompt, params, n)], states, n):
        return Response(status_code=499)
    version = backend.policy_version
    body = {
        "request_id": new_id("gen"),
        "prompt_token_ids": prompt,
        "choices": [token_choice(s, top, version, params.toploc) for s in states],
        "usage": usage(len(prompt), sum(len(s.token_ids) for s in states)),
    }
    return JSONResponse(body)


async def _generated(
    raw: Request, streams: list[AsyncIterator[SequenceDelta]], states: list[ChoiceState], n: int
) -> bool:
    """Run the generations into `states`; False when the client went away first (they were aborted)."""
    try:
        finished = await _unless_disconnected(raw, _collect(streams, states, n))
    except InvalidRequestError as e:
        raise APIError(400, str(e), "n") from None
    if not finished:
        log.info("client went away; its request was aborted")
    return finished


async def _stream_events(
    backend: Backend,
    shape: ChoiceShaper,
    model_name: str,
    prompts: list[list[int]],
    streams: list[AsyncIterator[SequenceDelta]],
    states: list[ChoiceState],
) -> AsyncIterator[str]:
    request = shape.request
    n = request.n
    head = {
        "id": new_id("chatcmpl" if shape.chat else "cmpl"),
        "object": "chat.completion.chunk" if shape.chat else "text_completion",
        "created": now(),
        "model": model_name,
    }
    try:
        async for i, delta in merged_streams(streams):
            state = states[i * n + delta.index]
            state.add(delta)
            choice = shape.chunk(state, prompts[i], backend.policy_version)
            yield _sse({**head, "choices": [choice]})
            # While deltas are queued up, nothing here waits, and the event loop would serve no other
            # request (a weight update) until this stream drains.
            await asyncio.sleep(0)
        if request.stream_options and request.stream_options.include_usage:
            used = usage(sum(map(len, prompts)), sum(len(s.token_ids) for s in states))
            yield _sse({**head, "choices": [], "usage": used})
    except (InvalidRequestError, EngineDeadError) as e:
        status = 400 if isinstance(e, InvalidRequestError) else 503
        yield _sse(APIError(status, str(e)).body())
    yield "data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"
