"""Wire schemas of the OpenAI-compatible API, the asyncrl extensions, and OpenAI-style error bodies."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class APIError(Exception):
    """An error answered to the client as `{"error": {...}}` with an HTTP status."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None, kind: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind or {404: "not_found_error", 503: "service_unavailable"}.get(
            status, "invalid_request_error"
        )

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    stops = [stop] if isinstance(stop, str) else stop or []
    return tuple(s for s in stops if s)


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Request(BaseModel):
    # Unknown OpenAI fields (user, frequency_penalty, ...) are accepted and ignored, as vLLM does. JSON has
    # no infinity, but Python's parser takes `Infinity`: not a sampling setting.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str | None = None
    n: int = Field(1, ge=1, le=128)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    return_token_ids: bool = False
    """asyncrl/vLLM extension: each choice also carries `prompt_token_ids` and `token_ids`."""
    ignore_eos: bool = False
    """Extension: keep generating past EOS until `max_tokens` (benchmarks)."""
    toploc: bool = False
    """asyncrl extension: each choice also carries `toploc_proofs`, base64 TOPLOC proofs of its tokens, one
    per inference.toploc.chunk_size tokens (also on when the server runs with inference.toploc = true)."""
    return_routed_experts: bool = False
    """asyncrl extension, for MoE models: each choice also carries `routed_experts`, the experts every MoE
    layer routed each generated token's producing position to (router replay; see asyncrl.moe)."""

    def stop_strings(self) -> tuple[str, ...]:
        return _stop_strings(self.stop)


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    """Return the logprob of each token and of this many alternatives."""


class ChatCompletionRequest(_Request):
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    """"none" keeps tool-call text as content; anything else lets the server parse tool calls."""
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    add_generation_prompt: bool = True
    continue_final_message: bool = False


class ChatCompletionTokensRequest(ChatCompletionRequest):
    """prime-rl's `/v1/chat/completions/tokens`, which verifiers' 2025 token client posts from the second
    turn on: `tokens` is the prompt as the model must see it (earlier turns exactly as sampled, then the
    environment's reply as the chat template renders it); `messages` and `tools` only shape the answer."""

    tokens: list[int] = Field(min_length=1)


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    tools: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = True


NEUTRAL_SAMPLING = {
    "top_k": (-1, 0),
    "min_p": (0.0,),
    "repetition_penalty": (1.0,),
    "presence_penalty": (0.0,),
    "frequency_penalty": (0.0,),
}
"""vLLM sampling knobs this server does not implement, with the values that leave sampling unchanged: any
other value is refused, since the logprobs returned would not be those of the distribution sampled."""


class GenerateSamplingParams(BaseModel):
    """vLLM's `SamplingParams` as `/inference/v1/generate` takes them; unknown keys are ignored, as on the
    OpenAI routes."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    n: int = Field(1, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    """None: up to the context window."""
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    """Ids that end a sequence, besides the model's EOS ids."""
    ignore_eos: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    """Return each token's logprob and this many alternatives (renderers asks for 1)."""
    toploc: bool = False
    """asyncrl extension, as on the OpenAI routes."""

    @model_validator(mode="after")
    def _implemented(self) -> GenerateSamplingParams:
        for key, neutral in NEUTRAL_SAMPLING.items():
            value = (self.model_extra or {}).get(key)
            if value is not None and value not in neutral:
                raise ValueError(
                    f"sampling_params.{key}={value!r} is not implemented by this server; leave it out "
                    f"(or set it to {neutral[0]!r})"
                )
        return self

    def stop_strings(self) -> tuple[str, ...]:
        return _stop_strings(self.stop)


class GenerateRequest(BaseModel):
    """`POST /inference/v1/generate`, the token route of train clients (verifiers' renderers)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    token_ids: list[int] = Field(min_length=1)
    """The prompt, as token ids."""
    sampling_params: GenerateSamplingParams = GenerateSamplingParams()
    stream: bool = False
    request_id: str | None = None
    cache_salt: str | None = None
    """Accepted for compatibility: this server shares no prefix cache between requests."""
    priority: int | None = None
    """Accepted for compatibility: requests are served first come, first served."""

    @model_validator(mode="after")
    def _not_streamed(self) -> GenerateRequest:
        if self.stream:
            raise ValueError("this route answers with one JSON body: leave `stream` out or false")
        return self


class UpdateWeightsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    """An HF weights dir of the served model's shape."""
    source: list[str] | None = Field(None, min_length=1)
    """Or shardcast origins/relays (URLs) to fetch `version` from first (asyncrl.broadcast)."""
    version: int = Field(ge=0, lt=2**63)
    """The policy version these weights are (the trainer step that produced them)."""

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("source"), str):
            value = {**value, "source": [value["source"]]}  # one URL given as a string
        return value

    @model_validator(mode="after")
    def _path_or_source(self) -> UpdateWeightsRequest:
        if (self.path is None) == (self.source is None):
            raise ValueError("give `path` (a local HF dir) or `source` (broadcast URLs), exactly one")
        return self


def new_id(prefix: Literal["cmpl", "chatcmpl", "gen"]) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


# Responses, as clients read them: what asyncrl's ModelClient parses, whichever OpenAI-compatible server
# answered (fields another server leaves out take their defaults; fields this one does not know are kept).


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


class TokenLogprob(_Response):
    token: str = ""
    logprob: float


class ChatLogprobs(_Response):
    content: list[TokenLogprob] | None = None


class CompletionLogprobs(_Response):
    tokens: list[str] = []
    token_logprobs: list[float | None] = []


class _Choice(_Response):
    index: int = 0
    finish_reason: str | None = None
    prompt_token_ids: list[int] | None = None
    """asyncrl (and vLLM) with `return_token_ids`: the prompt as the model saw it."""
    token_ids: list[int] | None = None
    """With `return_token_ids`: the generated tokens."""
    policy_version: int = 0
    """asyncrl: the weights version that generated the choice (the oldest, across an update)."""
    token_policy_versions: list[int] | None = None
    """asyncrl with `return_token_ids`: each token's weights version."""
    toploc_proofs: list[str] | None = None
    """asyncrl with `toploc`: one TOPLOC proof per chunk."""
    routed_experts: dict[str, Any] | None = None
    """asyncrl with `return_routed_experts`: {dtype, shape: [tokens, MoE layers, k], data: base64}, the
    whole choice's (a stream sends it once, on the choice's last chunk)."""


class ChatChoice(_Choice):
    message: dict[str, Any]
    logprobs: ChatLogprobs | None = None


class CompletionChoice(_Choice):
    text: str = ""
    logprobs: CompletionLogprobs | None = None


class ChatCompletionResponse(_Response):
    id: str = ""
    model: str = ""
    choices: list[ChatChoice] = Field(min_length=1)


class CompletionResponse(_Response):
    id: str = ""
    model: str = ""
    choices: list[CompletionChoice] = Field(min_length=1)


class TokenizeResponse(_Response):
    tokens: list[int]
