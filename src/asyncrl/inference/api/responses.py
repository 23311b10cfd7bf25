"""Turning engine deltas into OpenAI choices: text (with stop strings cut), logprobs, and stream chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from asyncrl.inference.api.output_parsers import assistant_message
from asyncrl.inference.api.protocol import ChatCompletionRequest, CompletionRequest
from asyncrl.inference.backend import SequenceDelta
from asyncrl.models import byte_symbols
from asyncrl.moe import encode_routed_experts

# JSON has no -inf: a token outside the top-p nucleus reports this instead, as vLLM does.
MIN_LOGPROB = -9999.0


def finite(logprob: float) -> float:
    return logprob if logprob > MIN_LOGPROB else MIN_LOGPROB


class TokenTexts:
    """Per-id token strings and raw bytes for logprobs, computed once per id."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self._byte_of = {symbol: b for b, symbol in enumerate(byte_symbols())}
        self._cache: dict[int, tuple[str, bytes]] = {}

    def _lookup(self, token_id: int) -> tuple[str, bytes]:
        found = self._cache.get(token_id)
        if found is None:
            text = self.tokenizer.decode([token_id])
            # Byte-level BPE tokens spell their bytes in GPT-2's byte alphabet; that recovers the bytes of
            # a token holding part of a UTF-8 character, which its decoded text cannot.
            symbols = self.tokenizer.convert_ids_to_tokens(token_id) or ""
            if symbols and all(ch in self._byte_of for ch in symbols):
                raw = bytes(self._byte_of[ch] for ch in symbols)
            else:
                raw = text.encode()
            found = self._cache[token_id] = (text, raw)
        return found

    def text(self, token_id: int) -> str:
        return self._lookup(token_id)[0]

    def raw(self, token_id: int) -> bytes:
        return self._lookup(token_id)[1]

    def key(self, token_id: int) -> str:
        """A token's name in legacy `top_logprobs` dicts: its text, or `bytes:\\xNN...` when the text
        is not a whole character (so distinct tokens never share a key)."""
        text, raw = self._lookup(token_id)
        if text and "\ufffd" not in text:
            return text
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def _cut_at_stops(text: str, stops: tuple[str, ...], start: int = 0) -> str:
    """`text` up to the first stop string found at or after `start`."""
    cuts = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return text[: min(cuts)] if cuts else text


@dataclass
class ChoiceState:
    """One choice as it accumulates: tokens, logprobs, versions, and how much text was already sent."""

    index: int
    stops: tuple[str, ...]
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    policy_versions: list[int] = field(default_factory=list)
    toploc_proofs: list[str] = field(default_factory=list)
    routed_experts: list[list[list[int]]] = field(default_factory=list)
    finish_reason: str | None = None
    sent_chars: int = 0
    sent_tokens: int = 0
    sent_text_offset: int = 0
    """Characters of token text (logprobs' `text_offset`) before token `sent_tokens`."""
    _decoded: str = ""
    """The text of `token_ids[:_read]`, grown a window at a time while streaming."""
    _window: int = 0
    _read: int = 0

    def add(self, delta: SequenceDelta) -> None:
        self.token_ids += delta.token_ids
        self.logprobs += delta.logprobs
        self.top_logprobs += delta.top_logprobs
        self.policy_versions += delta.policy_versions
        self.toploc_proofs += delta.toploc_proofs
        self.routed_experts += delta.routed_experts
        self.finish_reason = delta.finish_reason

    def text(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """The decoded completion, cut before the first stop string."""
        return _cut_at_stops(tokenizer.decode(self.token_ids, skip_special_tokens=True), self.stops)

    def _decode_new_tokens(self, tokenizer: PreTrainedTokenizerBase) -> None:
        # Decoding the whole completion for every chunk makes a long stream quadratic. Decoding from the
        # previous chunk's tokens on keeps what a tokenizer does at a word's start (a leading space) the
        # same in both decodes, so their difference is the new text.
        before = tokenizer.decode(self.token_ids[self._window : self._read], skip_special_tokens=True)
        after = tokenizer.decode(self.token_ids[self._window :], skip_special_tokens=True)
        if after.endswith("\ufffd") and self.finish_reason is None:
            return  # the rest of a UTF-8 character is still to come
        self._decoded += after[len(before) :]
        self._window, self._read = self._read, len(self.token_ids)

    def unsent_text(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """Text not yet streamed. Until the choice ends, hold back a possible stop-string prefix and a
        trailing incomplete UTF-8 character."""
        self._decode_new_tokens(tokenizer)
        # A stop string found now cannot start before `sent_chars`: what was sent held back its prefix.
        text = _cut_at_stops(self._decoded, self.stops, self.sent_chars)
        end = len(text)
        if self.finish_reason is None:
            end -= max((len(s) - 1 for s in self.stops), default=0)
        piece = text[self.sent_chars : max(end, self.sent_chars)]
        self.sent_chars += len(piece)
        return piece

    def wire_routed_experts(self) -> dict[str, Any]:
        """The choice's routed experts as `routed_experts` carries them (the whole choice's, at its end)."""
        experts = torch.tensor(self.routed_experts, dtype=torch.int16)
        return encode_routed_experts(experts if experts.ndim == 3 else experts.view(0, 0, 0))

    def policy_version(self, current: int) -> int:
        """The oldest policy that produced a token of this choice."""
        return min(self.policy_versions, default=current)

    def extensions(self, prompt_token_ids: list[int], with_token_ids: bool, current: int) -> dict[str, Any]:
        out: dict[str, Any] = {"policy_version": self.policy_version(current)}
        if with_token_ids:
            out["prompt_token_ids"] = prompt_token_ids
            out["token_ids"] = self.token_ids
            out["token_policy_versions"] = self.policy_versions
        return out


def chat_logprobs(
    state: ChoiceState, token_text: TokenTexts, start: int = 0, top: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """The chat `logprobs.content` list for tokens `start:`."""

    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        return {
            "token": token_text.text(token_id),
            "logprob": finite(logprob),
            "bytes": list(token_text.raw(token_id)),
        }

    content = []
    for i in range(start, len(state.token_ids)):
        item = entry(state.token_ids[i], state.logprobs[i])
        item["top_logprobs"] = [entry(t, lp) for t, lp in state.top_logprobs[i][:top]] if top else []
        content.append(item)
    return {"content": content}


def completion_logprobs(
    state: ChoiceState, token_text: TokenTexts, start: int = 0, top: int = 0, offset: int = 0
) -> dict[str, list[Any]]:
    """The legacy completions `logprobs` object for tokens `start:`, whose text begins at `offset`."""
    tokens, offsets = [], []
    for token_id in state.token_ids[start:]:
        tokens.append(token_text.text(token_id))
        offsets.append(offset)
        offset += len(tokens[-1])
    top_logprobs = None
    if top:
        top_logprobs = [
            {token_text.key(t): finite(lp) for t, lp in state.top_logprobs[i][:top]}
            for i in range(start, len(state.token_ids))
        ]
    return {
        "tokens": tokens,
        "token_logprobs": [finite(lp) for lp in state.logprobs[start:]],
        "top_logprobs": top_logprobs,
        "text_offset": offsets,
    }


def token_choice(state: ChoiceState, top: int | None, current: int, toploc: bool) -> dict[str, Any]:
    """A choice of `/inference/v1/generate`: token ids, and with `top` set their logprobs keyed by id
    (`token_id:<id>`, the shape renderers accepts), plus asyncrl's policy versions."""
    choice: dict[str, Any] = {
        "index": state.index,
        "token_ids": state.token_ids,
        "logprobs": None,
        "finish_reason": state.finish_reason,
        "policy_version": state.policy_version(current),
        "token_policy_versions": state.policy_versions,
    }
    if top is not None:

        def entry(token_id: int, logprob: float) -> dict[str, Any]:
            return {"token": f"token_id:{token_id}", "logprob": finite(logprob)}

        content = []
        for i, token_id in enumerate(state.token_ids):
            item = entry(token_id, state.logprobs[i])
            item["top_logprobs"] = [entry(t, lp) for t, lp in state.top_logprobs[i][:top]] if top else []
            content.append(item)
        choice["logprobs"] = {"content": content}
    if toploc:
        choice["toploc_proofs"] = state.toploc_proofs
    return choice


class ChoiceShaper:
    """Builds a choice (whole, or a stream chunk of it) for completions or chat."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        token_text: TokenTexts,
        request: CompletionRequest | ChatCompletionRequest,
        tool_call_parser: str | None = None,
        reasoning_parser: str | None = None,
        toploc: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.toploc = toploc
        """Choices carry `toploc_proofs` (streams: on the chunk that ends the choice)."""
        self.token_text = token_text
        self.request = request
        # As in vLLM, tool calls are only looked for when the request offers tools.
        offers_tools = getattr(request, "tools", None) and getattr(request, "tool_choice", None) != "none"
        self.tool_call_parser = tool_call_parser if offers_tools else None
        self.reasoning_parser = reasoning_parser
        self.chat = isinstance(request, ChatCompletionRequest)
        if isinstance(request, ChatCompletionRequest):
            self.want_logprobs, self.top = request.logprobs, request.top_logprobs or 0
        else:
            self.want_logprobs, self.top = request.logprobs is not None, request.logprobs or 0

    def _logprobs(self, state: ChoiceState, start: int) -> dict[str, Any] | None:
        if not self.want_logprobs:
            return None
        if self.chat:
            return chat_logprobs(state, self.token_text, start, self.top)
        return completion_logprobs(state, self.token_text, start, self.top, state.sent_text_offset)

    def full(self, state: ChoiceState, prompt: list[int], version: int) -> dict[str, Any]:
        text = state.text(self.tokenizer)
        choice: dict[str, Any] = {"index": state.index}
        finish_reason = state.finish_reason
        if self.chat:
            choice["message"] = assistant_message(text, self.tool_call_parser, self.reasoning_parser)
            if "tool_calls" in choice["message"] and finish_reason == "stop":
                finish_reason = "tool_calls"
        else:
            choice["text"] = text
        choice["logprobs"] = self._logprobs(state, 0)
        choice["finish_reason"] = finish_reason
        choice.update(state.extensions(prompt, self.request.return_token_ids, version))
        if self.toploc:
            choice["toploc_proofs"] = state.toploc_proofs
        if self.request.return_routed_experts:
            choice["routed_experts"] = state.wire_routed_experts()
        return choice

    def chunk(self, state: ChoiceState, prompt: list[int], version: int) -> dict[str, Any]:
        start = state.sent_tokens
        text = state.unsent_text(self.tokenizer)
        choice: dict[str, Any] = {"index": state.index}
        if self.chat:
            choice["delta"] = {"content": text} if start else {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice["logprobs"] = self._logprobs(state, start)
        if choice["logprobs"] and not self.chat:  # the next chunk's text offsets go on from here
            state.sent_text_offset += sum(map(len, choice["logprobs"]["tokens"]))
        choice["finish_reason"] = state.finish_reason
        if self.request.return_token_ids:
            choice["token_ids"] = state.token_ids[start:]
            choice["token_policy_versions"] = state.policy_versions[start:]
            if start == 0:
                choice["prompt_token_ids"] = prompt
        if state.finish_reason is not None:
            choice["policy_version"] = state.policy_version(version)
            if self.toploc:
                choice["toploc_proofs"] = state.toploc_proofs
            if self.request.return_routed_experts:
                choice["routed_experts"] = state.wire_routed_experts()
        state.sent_tokens = len(state.token_ids)
        return choice


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
