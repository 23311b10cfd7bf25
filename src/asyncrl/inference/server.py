"""`asyncrl inference`: the OpenAI-compatible HTTP server (routes validate, call the backend, shape)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from jinja2 import TemplateError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from transformers import PreTrainedTokenizerBase

from asyncrl.inference.backend import (
    Backend,
    EngineDeadError,
    SamplingParams,
    WeightUpdateError,
)
from asyncrl.inference.config import InferenceConfig, InferenceServerConfig
from asyncrl.inference.metrics import engine_registry
from asyncrl.inference.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    TokenizeRequest,
    UpdateWeightsRequest,
    now,
)
from asyncrl.inference.respond import respond
from asyncrl.inference.responses import ChoiceShaper, TokenTexts
from asyncrl.models import eos_token_ids, load_tokenizer, resolve_model_path

log = logging.getLogger("asyncrl.inference")


class Served:
    """What the routes share: the backend, the tokenizer and the model's identity."""

    def __init__(
        self,
        backend: Backend,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        eos: tuple[int, ...],
        toploc: bool = False,
    ) -> None:
        self.backend = backend
        self.toploc = toploc
        """Prove every generation, whether or not the request asks."""
        self.tokenizer = tokenizer
        self.name = name
        self.eos_token_ids = eos
        self.token_text = TokenTexts(tokenizer)
        self.weights_lock = asyncio.Lock()

    def check_choices(self, n: int) -> None:
        if n > self.backend.max_choices:
            raise APIError(
                400, f"n={n} exceeds this server's limit of {self.backend.max_choices} choices", "n"
            )

    def encode(self, text: str) -> list[int]:
        try:
            return self.tokenizer.encode(text, add_special_tokens=False)
        except (TypeError, ValueError) as e:
            raise APIError(400, f"the prompt cannot be tokenized: {e}", "prompt") from None

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.name:
            raise APIError(
                404,
                f"model {model!r} does not exist; this server serves {self.name!r}",
                "model",
                "model_not_found",
            )

    def sampling_params(
        self,
        request: CompletionRequest | ChatCompletionRequest,
        prompt_len: int,
        max_tokens: int | None,
        top_logprobs: int,
    ) -> SamplingParams:
        limit = self.backend.max_model_len
        prompt_param = "messages" if isinstance(request, ChatCompletionRequest) else "prompt"
        if prompt_len >= limit:
            raise APIError(
                400,
                f"the prompt has {prompt_len} tokens; this model's context window is {limit} "
                "tokens, which must also hold at least one completion token",
                prompt_param,
            )
        if prompt_len == 0:
            raise APIError(400, "the prompt is empty", prompt_param)
        if max_tokens is None:
            max_tokens = limit - prompt_len
        elif prompt_len + max_tokens > limit:
            raise APIError(
                400,
                f"max_tokens={max_tokens} plus the prompt's {prompt_len} tokens exceeds this "
                f"model's context window of {limit} tokens; lower max_tokens",
                "max_tokens",
            )
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            top_logprobs=top_logprobs,
            stop=request.stop_strings(),
            stop_token_ids=self.eos_token_ids,
            ignore_eos=request.ignore_eos,
            toploc=request.toploc or self.toploc,
        )

    def render_chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
        continue_final_message: bool,
    ) -> list[int]:
        """The prompt ids of a conversation, as the chat template renders it."""
        try:
            ids = self.tokenizer.apply_chat_template(
                [_text_message(m) for m in messages],
                tools=tools,
                add_generation_prompt=add_generation_prompt and not continue_final_message,
                continue_final_message=continue_final_message,
                tokenize=True,
                return_dict=False,
            )
        except (TemplateError, KeyError, TypeError, ValueError) as e:
            raise APIError(
                400, f"messages cannot be rendered by the chat template: {e}", "messages"
            ) from None
        return list(ids)

    def check_token_ids(self, ids: list[int]) -> list[int]:
        # The model's vocabulary, not the tokenizer's: ids the model generated must be accepted back.
        vocab = self.backend.vocab_size
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise APIError(400, f"prompt token id {bad[0]} is outside the vocabulary [0, {vocab})", "prompt")
        return ids


def create_app(
    backend: Backend,
    tokenizer: PreTrainedTokenizerBase,
    name: str,
    eos: tuple[int, ...],
    config: InferenceConfig,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await backend.start()
        yield
        await backend.stop()

    app = FastAPI(title="asyncrl inference", lifespan=lifespan)
    served = Served(backend, tokenizer, name, eos, config.toploc.enabled)
    registry = engine_registry(backend)

    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        if first["type"] == "json_invalid":
            detail = first.get("ctx", {}).get("error", "")
            message = f"the request body is not valid JSON ({detail}); send a JSON object"
            return JSONResponse(APIError(400, message).body(), status_code=400)
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        if first["type"] == "value_error":  # one of asyncrl's validators, whose message says it all
            message = first["msg"].removeprefix("Value error, ")
        elif param is None:  # the body as a whole: empty, or not an object
            message = "the request body must be a JSON object (Content-Type: application/json)"
        else:
            message = f"{param}: {first['msg']}"
        return JSONResponse(APIError(400, message, param).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        body = APIError(500, f"internal error: {type(e).__name__}: {e}", kind="internal_error").body()
        return JSONResponse(body, status_code=500)

    @app.exception_handler(EngineDeadError)
    async def engine_dead(_: Request, e: EngineDeadError) -> JSONResponse:
        return JSONResponse(APIError(503, str(e)).body(), status_code=503)

    @app.get("/health")
    async def health() -> JSONResponse:
        stats = backend.stats()
        return JSONResponse({"status": "ok", "policy_version": stats.policy_version, "pid": os.getpid()})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {
            "id": name,
            "object": "model",
            "created": now(),
            "owned_by": "asyncrl",
            "max_model_len": backend.max_model_len,
        }
        return {"object": "list", "data": [card]}

    from asyncrl.broadcast.errors import BroadcastError
    from asyncrl.broadcast.inbox import WeightsInbox

    inbox = WeightsInbox(config.broadcast)

    @app.post("/update_weights")
    async def update_weights(request: UpdateWeightsRequest) -> dict[str, Any]:
        fetched: dict[str, Any] = {}
        async with served.weights_lock:
            path = request.path
            if request.source is not None:
                # Fetched and checked into this server's own dir first: a failed fetch loads nothing.
                try:
                    out, report = await asyncio.to_thread(inbox.fetch, request.source, request.version)
                except BroadcastError as e:
                    raise APIError(e.http_status, f"{e}; the old weights keep serving", "source") from None
                path, fetched = str(out), {"path": str(out), "fetch": report.as_dict()}
                log.info("weights v%d: %s", request.version, report.summary())
            try:
                seconds = await backend.update_weights(path, request.version)
            except WeightUpdateError as e:
                raise APIError(400, f"{e}; the old weights keep serving", "path") from None
        log.info("weights v%d from %s swapped in %.3fs", request.version, path, seconds)
        return {"status": "ok", "policy_version": request.version, "seconds": seconds, **fetched}

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest, raw: Request) -> Response:
        served.check_model(request.model)
        served.check_choices(request.n)
        prompts = _completion_prompts(served, request.prompt)
        top = request.logprobs or 0
        params = [served.sampling_params(request, len(p), request.max_tokens, top) for p in prompts]
        shape = ChoiceShaper(tokenizer, served.token_text, request, toploc=params[0].toploc)
        return await respond(raw, backend, shape, name, prompts, params)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: ChatCompletionRequest, raw: Request) -> Response:
        served.check_model(request.model)
        served.check_choices(request.n)
        prompt = served.render_chat(
            request.messages, request.tools, request.add_generation_prompt, request.continue_final_message
        )
        max_tokens = request.max_completion_tokens or request.max_tokens
        top = (request.top_logprobs or 0) if request.logprobs else 0
        params = [served.sampling_params(request, len(prompt), max_tokens, top)]
        shape = ChoiceShaper(
            tokenizer,
            served.token_text,
            request,
            _enabled(config.tool_call_parser),
            _enabled(config.reasoning_parser),
            toploc=params[0].toploc,
        )
        return await respond(raw, backend, shape, name, [list(prompt)], params)

    @app.post("/tokenize")
    async def tokenize(request: TokenizeRequest) -> dict[str, Any]:
        """vLLM's /tokenize: the prompt ids a chat or completions request would be given."""
        served.check_model(request.model)
        if request.messages is not None:
            tokens = served.render_chat(request.messages, request.tools, request.add_generation_prompt, False)
        elif request.prompt is not None:
            tokens = served.encode(request.prompt)
        else:
            raise APIError(400, "give `messages` or `prompt`", "messages")
        return {"tokens": tokens, "count": len(tokens), "max_model_len": backend.max_model_len}

    return app


def _completion_prompts(
    served: Served, prompt: str | list[str] | list[int] | list[list[int]]
) -> list[list[int]]:
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "prompt is empty", "prompt")
    if all(isinstance(p, int) for p in prompt):
        return [served.check_token_ids(list(prompt))]  # type: ignore[arg-type]
    return [
        served.check_token_ids(p) if isinstance(p, list) else served.encode(p)
        for p in prompt  # type: ignore[union-attr]
    ]


def _enabled(parser: str) -> str | None:
    return None if parser == "off" else parser


def _text_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message whose `content` is a list of OpenAI content parts, with the text parts joined."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        raise APIError(400, "only text content parts are supported", "messages")
    return {**message, "content": "".join(str(p.get("text", "")) for p in content)}


def open_backend(config: InferenceServerConfig) -> AbstractContextManager[Backend]:
    """The engine `inference.backend` names, loaded (vLLM: started and serving) on entering, and stopped
    (vLLM: its processes ended) on leaving."""
    from contextlib import nullcontext

    if config.inference.backend == "vllm":
        from asyncrl.inference.vllm_backend import VLLMBackend

        return VLLMBackend.launched(config, resolve_model_path(config.model.path))
    from asyncrl.inference.engine import TorchEngine

    return nullcontext(TorchEngine(config.model.path, config.model.dtype, config.inference, config.seed))


def serve(config: InferenceServerConfig) -> None:
    """Run the server until interrupted. Model problems (and vLLM's start-up errors) surface here, before
    the port is bound."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model_dir = str(resolve_model_path(config.model.path))
    tokenizer = load_tokenizer(config.model.path)
    with open_backend(config) as backend:
        name = config.inference.served_model_name or config.model.served_name
        app = create_app(backend, tokenizer, name, eos_token_ids(model_dir, tokenizer), config.inference)
        server = uvicorn.Server(
            # uvicorn's own INFO lines say where it listens (the port, when 0 picked one); one line per
            # request would bury the rest.
            uvicorn.Config(app, host=config.inference.host, port=config.inference.port, access_log=False)
        )
        if config.inference.backend == "vllm":
            # A server whose vLLM died stops (and says why) rather than answer 503 forever.
            backend.stop_serving = lambda: setattr(server, "should_exit", True)  # type: ignore[attr-defined]
        server.run()
