"""Turning engine deltas into OpenAI choices: text (with stop strings cut), logprobs, and stream chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedTokenizerBase

from asyncrl.inference.backend import SequenceDelta


class TokenTexts:
    """Per-id token strings for logprobs, decoded once and cached."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self._texts: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self._texts.get(token_id)
        if text is None:
            text = self._texts[token_id] = self.tokenizer.decode([token_id])
        return text


@dataclass
class ChoiceState:
    """One choice as it accumulates: tokens, logprobs, versions, and how much text was already sent."""

    index: int
    stops: tuple[str, ...]
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    policy_versions: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    sent_chars: int = 0
    sent_tokens: int = 0

    def add(self, delta: SequenceDelta) -> None:
        self.token_ids += delta.token_ids
        self.logprobs += delta.logprobs
        self.top_logprobs += delta.top_logprobs
        self.policy_versions += delta.policy_versions
        self.finish_reason = delta.finish_reason

    def text(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """The decoded completion, cut before the first stop string."""
        text = tokenizer.decode(self.token_ids, skip_special_tokens=True)
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return text[: min(cuts)] if cuts else text

    def unsent_text(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """Text not yet streamed. Until the choice ends, hold back a possible stop-string prefix and a
        trailing incomplete UTF-8 character."""
        text = self.text(tokenizer)
        end = len(text)
        if self.finish_reason is None:
            end -= max((len(s) - 1 for s in self.stops), default=0)
            while end > self.sent_chars and text[end - 1] == "\ufffd":
                end -= 1
        piece = text[self.sent_chars : max(end, self.sent_chars)]
        self.sent_chars += len(piece)
        return piece

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
        text = token_text(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    content = []
    for i in range(start, len(state.token_ids)):
        item = entry(state.token_ids[i], state.logprobs[i])
        item["top_logprobs"] = [entry(t, lp) for t, lp in state.top_logprobs[i][:top]] if top else []
        content.append(item)
    return {"content": content}


def completion_logprobs(
    state: ChoiceState, token_text: TokenTexts, start: int = 0, top: int = 0
) -> dict[str, list[Any]]:
    """The legacy completions `logprobs` object for tokens `start:`."""
    tokens = [token_text(t) for t in state.token_ids[start:]]
    offsets, offset = [], 0
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    top_logprobs = (
        [
            {token_text(t): lp for t, lp in state.top_logprobs[i][:top]}
            for i in range(start, len(state.token_ids))
        ]
        if top
        else None
    )
    return {
        "tokens": tokens,
        "token_logprobs": state.logprobs[start:],
        "top_logprobs": top_logprobs,
        "text_offset": offsets,
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
