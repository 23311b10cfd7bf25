"""The HTTP routes, on one module-level router: each validates, calls the backend, shapes the answer. The
backend and everything else a route needs come from the app's state (`Served`)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from asyncrl.broadcast.errors import BroadcastError
from asyncrl.inference.api.protocol import (
    APIError,
    ChatCompletionRequest,
    ChatCompletionTokensRequest,
    CompletionRequest,
    GenerateRequest,
    TokenizeRequest,
    UpdateWeightsRequest,
    now,
)
from asyncrl.inference.api.respond import respond, respond_tokens
from asyncrl.inference.api.responses import ChoiceShaper
from asyncrl.inference.api.served import Served, completion_prompts
from asyncrl.inference.backend import WeightUpdateError

log = logging.getLogger("asyncrl.inference")
router = APIRouter()


def served(raw: Request) -> Served:
    return raw.app.state.served


@router.get("/health")
async def health(raw: Request) -> JSONResponse:
    stats = served(raw).backend.stats()
    return JSONResponse({"status": "ok", "policy_version": stats.policy_version, "pid": os.getpid()})


@router.get("/metrics")
async def metrics(raw: Request) -> Response:
    return Response(generate_latest(raw.app.state.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models")
async def models(raw: Request) -> dict[str, Any]:
    model = served(raw)
    card = {
        "id": model.name,
        "object": "model",
        "created": now(),
        "owned_by": "asyncrl",
        "max_model_len": model.backend.max_model_len,
    }
    return {"object": "list", "data": [card]}


@router.post("/update_weights")
async def update_weights(request: UpdateWeightsRequest, raw: Request) -> dict[str, Any]:
    model, access = served(raw), raw.app.state.access
    if request.source is not None:
        access.check_sources(request.source)
    path = access.weights_dir(request.path) if request.path is not None else None
    fetched: dict[str, Any] = {}
    async with model.weights_lock:
        serving = model.backend.stats().policy_version
        if request.version < serving:
            # An update that lost a race with a newer one, or a stale orchestrator: never roll back.
            raise APIError(
                409, f"version {request.version} is older than the serving policy v{serving}", "version"
            )
        if request.source is not None:
            # Fetched and checked into this server's own dir first: a failed fetch loads nothing.
            try:
                out, report = await asyncio.to_thread(model.inbox.fetch, request.source, request.version)
            except BroadcastError as e:
                raise APIError(e.http_status, f"{e}; the old weights keep serving", "source") from None
            path, fetched = str(out), {"path": str(out), "fetch": report.as_dict()}
            log.info("weights v%d: %s", request.version, report.summary())
        try:
            seconds = await model.backend.update_weights(path, request.version)
        except WeightUpdateError as e:
            raise APIError(400, f"{e}; the old weights keep serving", "path") from None
    log.info("weights v%d from %s swapped in %.3fs", request.version, path, seconds)
    return {"status": "ok", "policy_version": request.version, "seconds": seconds, **fetched}


@router.post("/v1/completions")
async def completions(request: CompletionRequest, raw: Request) -> Response:
    model = served(raw)
    model.check_model(request.model)
    model.check_choices(request.n)
    prompts = completion_prompts(model, request.prompt)
    top = request.logprobs or 0
    params = [model.sampling_params(request, len(p), request.max_tokens, top) for p in prompts]
    shape = ChoiceShaper(model.tokenizer, model.token_text, request, toploc=params[0].toploc)
    return await respond(raw, model.backend, shape, model.name, prompts, params)


@router.post("/v1/chat/completions")
async def chat_completions(request: ChatCompletionRequest, raw: Request) -> Response:
    model = served(raw)
    model.check_model(request.model)
    model.check_choices(request.n)
    prompt = model.render_chat(
        request.messages, request.tools, request.add_generation_prompt, request.continue_final_message
    )
    return await _chat(model, request, list(prompt), raw)


@router.post("/v1/chat/completions/tokens")
async def chat_completions_tokens(request: ChatCompletionTokensRequest, raw: Request) -> Response:
    """A chat completion whose prompt is given as token ids (`tokens`), not rendered from `messages`."""
    model = served(raw)
    model.check_model(request.model)
    model.check_choices(request.n)
    return await _chat(model, request, model.check_token_ids(request.tokens, "tokens"), raw)


async def _chat(model: Served, request: ChatCompletionRequest, prompt: list[int], raw: Request) -> Response:
    max_tokens = request.max_completion_tokens or request.max_tokens
    top = (request.top_logprobs or 0) if request.logprobs else 0
    params = [model.sampling_params(request, len(prompt), max_tokens, top)]
    shape = ChoiceShaper(
        model.tokenizer,
        model.token_text,
        request,
        model.tool_call_parser,
        model.reasoning_parser,
        toploc=params[0].toploc,
    )
    return await respond(raw, model.backend, shape, model.name, [prompt], params)


@router.post("/inference/v1/generate")
async def generate_tokens(request: GenerateRequest, raw: Request) -> Response:
    """vLLM's token route, in the shape verifiers' renderers client reads: token ids in, token ids and
    logprobs out."""
    model = served(raw)
    model.check_model(request.model)
    sampling = request.sampling_params
    model.check_choices(sampling.n)
    prompt = model.check_token_ids(request.token_ids, "token_ids")
    top = sampling.logprobs or 0
    params = model.sampling_params(sampling, len(prompt), sampling.max_tokens, top)
    return await respond_tokens(raw, model.backend, prompt, params, sampling.n, sampling.logprobs)


@router.post("/tokenize")
async def tokenize(request: TokenizeRequest, raw: Request) -> dict[str, Any]:
    """vLLM's /tokenize: the prompt ids a chat or completions request would be given."""
    model = served(raw)
    model.check_model(request.model)
    if request.messages is not None:
        tokens = model.render_chat(request.messages, request.tools, request.add_generation_prompt, False)
    elif request.prompt is not None:
        tokens = model.encode(request.prompt)
    else:
        raise APIError(400, "give `messages` or `prompt`", "messages")
    return {"tokens": tokens, "count": len(tokens), "max_model_len": model.backend.max_model_len}
