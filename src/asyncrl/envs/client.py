"""The only way environments reach a model: an OpenAI-compatible chat endpoint, asked for token ids.

Any server that speaks `/v1/chat/completions` with vLLM's `return_token_ids` extension works (the
built-in server, vLLM). Connection failures and 5xx answers are retried with backoff; 4xx answers are
the caller's mistake and raised at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ValidationError

from asyncrl.errors import UserError
from asyncrl.inference.api.protocol import (
    ChatChoice,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionResponse,
    TokenizeResponse,
)
from asyncrl.inference.config import ADMIN_KEY_ENV, API_KEY_ENV
from asyncrl.network import secret

if TYPE_CHECKING:  # torch only where routing is recorded: commands that load no model skip its import
    import torch

log = logging.getLogger("asyncrl.envs")


class ModelUnavailableError(UserError):
    """The model server could not be reached, or kept failing, after every retry."""


class ModelRequestError(UserError):
    """The model server refused a request (4xx); retrying would not help."""


@dataclass
class ChatTurn:
    """One generation: the assistant message plus the exact tokens behind it."""

    message: dict[str, Any]
    prompt_token_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    policy_version: int
    """The oldest policy that produced a token of this turn."""
    finish_reason: str
    token_policy_versions: list[int] = field(default_factory=list)
    """The policy behind each generated token (weights may change mid-generation), when the server says."""
    toploc_proofs: list[str] = field(default_factory=list)
    """TOPLOC proofs of the generated tokens, when the request asked for them."""
    routed_experts: torch.Tensor | None = None
    """[generated tokens, MoE layers, k] int16: the experts that produced each token, when the request
    asked for them (`return_routed_experts`)."""


@dataclass
class ModelClient:
    base_url: str
    model: str
    timeout_s: float = 600.0
    retries: int = 5
    backoff_s: float = 0.5
    api_key: str | None = None
    """Bearer token of the server's routes (default: $ASYNCRL_API_KEY)."""
    admin_key: str | None = None
    """Bearer token of its admin route, /update_weights (default: $ASYNCRL_ADMIN_KEY)."""
    serving_version: int = 0
    """The newest weights version this server took through `/update_weights` here: it serves that policy or
    a newer one from then on."""
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.api_key = secret(self.api_key, API_KEY_ENV)
        self.admin_key = secret(self.admin_key, ADMIN_KEY_ENV)

    async def __aenter__(self) -> ModelClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        # aiohttp, not httpx: with a hundred requests in flight httpx's connection pool costs ~2 ms of CPU
        # per request, aiohttp ~0.3 ms, and the orchestrator shares its CPU with inference and trainer.
        # No connection cap: max_inflight bounds the requests.
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit=0),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def healthy(self) -> bool:
        """Whether the server answers /health now (one try, a short timeout)."""
        assert self._session is not None, "use `async with ModelClient(...)`"
        try:
            async with self._session.get(
                self.base_url.rstrip("/") + "/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def engine_counters(self) -> dict[str, float]:
        """The server's `asyncrl_*_total` counters from /metrics, by name without the prefix and suffix
        (one try, a short timeout; {} when it does not answer)."""
        assert self._session is not None, "use `async with ModelClient(...)`"
        try:
            async with self._session.get(
                self.base_url.rstrip("/") + "/metrics", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                text = await response.text() if response.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError):
            return {}
        return {
            sample.name.removeprefix("asyncrl_").removesuffix("_total"): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith("asyncrl_") and sample.name.endswith("_total")
        }

    async def post(self, path: str, body: dict[str, Any], admin: bool = False) -> dict[str, Any]:
        """POST with retries on connection errors, timeouts and 5xx; the JSON answer. `admin`: the route
        wants the admin key."""
        assert self._session is not None, "use `async with ModelClient(...)`"
        url = self.base_url.rstrip("/") + path
        headers = {"Authorization": f"Bearer {self.admin_key}"} if admin and self.admin_key else None
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                async with self._session.post(url, json=body, headers=headers) as response:
                    status, text = response.status, await response.text()
            except (aiohttp.ClientError, TimeoutError) as e:
                problem = f"{type(e).__name__}: {e}"
            else:
                if status < 400:
                    if path == "/update_weights":
                        self.serving_version = max(self.serving_version, body["version"])
                    return json.loads(text)
                if status < 500:
                    raise ModelRequestError(
                        f"{url} refused the request (HTTP {status}): {_error_message(text)}"
                    )
                problem = f"HTTP {status}: {text[:200]}"
            if attempt < self.retries:
                log.warning("model server %s: %s; retrying in %.1fs", self.base_url, problem, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise ModelUnavailableError(
            f"model server {self.base_url} failed {self.retries + 1} times: {problem}"
        )

    async def chat(
        self, messages: list[dict[str, Any]], sampling: dict[str, Any], tools: list[dict] | None = None
    ) -> ChatTurn:
        return (await self.chat_choices(messages, sampling, 1, tools))[0]

    async def chat_choices(
        self,
        messages: list[dict[str, Any]],
        sampling: dict[str, Any],
        n: int,
        tools: list[dict] | None = None,
    ) -> list[ChatTurn]:
        """`n` independent answers to `messages` from one request, in choice order."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "logprobs": True,
            "return_token_ids": True,
            **sampling,
            "n": n,
        }
        if tools:
            body["tools"] = tools
        answer = await self.post("/v1/chat/completions", body)
        parsed = _parse(ChatCompletionResponse, answer, "/v1/chat/completions")
        choices = sorted(parsed.choices, key=attrgetter("index"))
        if len(choices) != n:
            raise ModelRequestError(f"{self.base_url} answered {len(choices)} choices to a request for {n}")
        turns = []
        for choice in choices:
            content = (choice.logprobs.content if choice.logprobs else None) or []
            message = {k: v for k, v in choice.message.items() if v is not None}
            prompt_ids = choice.prompt_token_ids or []
            turns.append(_turn(choice, message, prompt_ids, [item.logprob for item in content]))
        return turns

    async def tokenize(
        self, messages: list[dict[str, Any]], tools: list[dict] | None, add_generation_prompt: bool
    ) -> list[int]:
        """The prompt ids the server's chat template gives `messages` (vLLM's `/tokenize`)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "add_generation_prompt": add_generation_prompt,
        }
        if tools:
            body["tools"] = tools
        return _parse(TokenizeResponse, await self.post("/tokenize", body), "/tokenize").tokens

    async def complete(self, prompt_token_ids: list[int], sampling: dict[str, Any]) -> tuple[str, ChatTurn]:
        """Generate from exact prompt ids (token-in); the text and the turn, whose message is left empty."""
        body = {
            "model": self.model,
            "prompt": prompt_token_ids,
            "logprobs": 0,
            "return_token_ids": True,
            **sampling,
        }
        choice = _parse(
            CompletionResponse, await self.post("/v1/completions", body), "/v1/completions"
        ).choices[0]
        logprobs = [lp or 0.0 for lp in choice.logprobs.token_logprobs] if choice.logprobs else []
        turn = _turn(choice, {}, choice.prompt_token_ids or prompt_token_ids, logprobs)
        return choice.text, turn


def _turn(
    choice: ChatChoice | CompletionChoice,
    message: dict[str, Any],
    prompt_token_ids: list[int],
    logprobs: list[float],
) -> ChatTurn:
    return ChatTurn(
        message=message,
        prompt_token_ids=prompt_token_ids,
        token_ids=choice.token_ids or [],
        logprobs=logprobs,
        policy_version=choice.policy_version,
        finish_reason=choice.finish_reason or "stop",
        token_policy_versions=choice.token_policy_versions or [],
        toploc_proofs=choice.toploc_proofs or [],
        routed_experts=_routed_experts(choice),
    )


def _routed_experts(choice: ChatChoice | CompletionChoice) -> torch.Tensor | None:
    if choice.routed_experts is None or not choice.token_ids:
        return None
    from asyncrl.moe import decode_routed_experts

    try:
        experts = decode_routed_experts(choice.routed_experts)
    except ValueError as e:
        raise ModelRequestError(f"the server's {e}") from None
    tokens = len(choice.token_ids or [])
    if len(experts) != tokens:
        raise ModelRequestError(f"the server routed {len(experts)} tokens of a {tokens}-token choice")
    return experts


R = TypeVar("R", bound=BaseModel)


def _parse(model: type[R], answer: dict[str, Any], route: str) -> R:
    """`answer` read with the API's response model; a ModelRequestError naming what is wrong otherwise."""
    try:
        return model.model_validate(answer)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelRequestError(f"{route} answered something that is not a {model.__name__}: {where}: "
                                f"{first['msg']}") from None  # fmt: skip


def _error_message(text: str) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message"}}`), else the body's start."""
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return text[:500]
    return message if isinstance(message, str) else text[:500]
