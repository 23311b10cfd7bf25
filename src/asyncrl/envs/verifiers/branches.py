"""A verifiers trace branch as asyncrl turns: each run of sampled tokens is one generation whose prompt is
every token before it, so `Rollout.token_sample` gives back the branch's ids, sampled mask and logprobs
exactly."""

from __future__ import annotations

from typing import Any

from asyncrl.envs.client import ChatTurn


def sampled_spans(mask: list[bool]) -> list[tuple[int, int]]:
    """`(start, end)` of each maximal run of True in `mask`."""
    spans, start = [], None
    for i, sampled in enumerate([*mask, False]):
        if sampled and start is None:
            start = i
        elif not sampled and start is not None:
            spans.append((start, i))
            start = None
    return spans


def branch_turns(
    token_ids: list[int],
    sampled_mask: list[bool],
    logprobs: list[float],
    replies: list[dict[str, Any]],
    policy_version: int,
    truncated: bool,
) -> list[ChatTurn]:
    """The turns of one branch. `replies` are its assistant messages, in order (one per sampled span when
    the renderer kept them apart); `truncated`: the last generation ran out of tokens."""
    if not len(token_ids) == len(sampled_mask) == len(logprobs):
        raise ValueError(
            f"a branch has {len(token_ids)} tokens, {len(sampled_mask)} mask entries and {len(logprobs)} "
            "logprobs"
        )
    spans = sampled_spans(sampled_mask)
    turns = []
    for k, (start, end) in enumerate(spans):
        last = k == len(spans) - 1
        turns.append(
            ChatTurn(
                message=replies[k] if k < len(replies) else {"role": "assistant", "content": ""},
                prompt_token_ids=token_ids[:start],
                token_ids=token_ids[start:end],
                logprobs=logprobs[start:end],
                policy_version=policy_version,
                finish_reason="length" if last and truncated else "stop",
            )
        )
    return turns
