"""What the routes share: the backend, the tokenizer and the model's identity, and the checks and
conversions every route applies to a request before the backend sees it."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from asyncrl.broadcast.inbox import WeightsInbox
from asyncrl.inference.api.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    GenerateSamplingParams,
)
from asyncrl.inference.api.responses import TokenTexts
from asyncrl.inference.backend import Backend, SamplingParams
from asyncrl.inference.config import InferenceConfig

RENDER_CACHE = 4096
"""Conversations whose rendered prompt ids are kept (a few hundred bytes each)."""


class Served:
    """What the routes share: the backend, the tokenizer and the model's identity."""

    def __init__(
        self,
        backend: Backend,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        eos: tuple[int, ...],
        config: InferenceConfig,
    ) -> None:
        self.backend = backend
        self.config = config
        self.toploc = config.toploc.enabled
        """Prove every generation, whether or not the request asks."""
        self.tool_call_parser = _enabled(config.tool_call_parser)
        self.reasoning_parser = _enabled(config.reasoning_parser)
        self.inbox = WeightsInbox(config.broadcast)
        """Where weights fetched from shardcast sources are kept."""
        self.tokenizer = tokenizer
        self.name = name
        self.eos_token_ids = eos
        self.token_text = TokenTexts(tokenizer)
        self.weights_lock = asyncio.Lock()
        # The rollouts of a group send the same conversation: render it once, not once per rollout.
        self._rendered = functools.lru_cache(maxsize=RENDER_CACHE)(self._render)

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
        request: CompletionRequest | ChatCompletionRequest | GenerateSamplingParams,
        prompt_len: int,
        max_tokens: int | None,
        top_logprobs: int,
    ) -> SamplingParams:
        limit = self.backend.max_model_len
        prompt_param = {ChatCompletionRequest: "messages", GenerateSamplingParams: "token_ids"}.get(
            type(request), "prompt"
        )
        stop_ids = self.eos_token_ids
        if isinstance(request, GenerateSamplingParams) and request.stop_token_ids:
            asked = self.check_token_ids(request.stop_token_ids, "sampling_params.stop_token_ids")
            stop_ids += tuple(t for t in asked if t not in stop_ids)
        if prompt_len >= limit:
            raise APIError(
                400,
                f"the prompt has {prompt_len} tokens; this model's context window is {limit} "
                "tokens, which must also hold at least one completion token",
                prompt_param,
            )
        if prompt_len == 0:
            raise APIError(400, "the prompt is empty", prompt_param)
        routed_experts = getattr(request, "return_routed_experts", False)
        if routed_experts and self.backend.no_routed_experts:
            raise APIError(
                400, f"return_routed_experts: {self.backend.no_routed_experts}", "return_routed_experts"
            )
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
            stop_token_ids=stop_ids,
            ignore_eos=request.ignore_eos,
            toploc=request.toploc or self.toploc,
            routed_experts=routed_experts,
        )

    def render_chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
        continue_final_message: bool,
    ) -> list[int]:
        """The prompt ids of a conversation, as the chat template renders it."""
        key = json.dumps([messages, tools, add_generation_prompt, continue_final_message], sort_keys=True)
        return list(self._rendered(key))

    def _render(self, key: str) -> tuple[int, ...]:
        messages, tools, add_generation_prompt, continue_final_message = json.loads(key)
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
        return tuple(ids)

    def check_token_ids(self, ids: list[int], param: str = "prompt") -> list[int]:
        # The model's vocabulary, not the tokenizer's: ids the model generated must be accepted back.
        vocab = self.backend.vocab_size
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise APIError(400, f"token id {bad[0]} in {param} is outside the vocabulary [0, {vocab})", param)
        return ids


def completion_prompts(
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
