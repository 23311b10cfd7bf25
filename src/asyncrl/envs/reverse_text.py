"""The built-in reverse-text task: give the model a short text, reward it for returning it reversed (its
tasks and score: reverse_text_tasks.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncrl.envs.client import ModelClient
from asyncrl.envs.environment import Rollout, SingleTurnEnv
from asyncrl.envs.parsers import Completion, Parser
from asyncrl.envs.reverse_text_tasks import Split, lcs_score, reverse_text_tasks
from asyncrl.envs.rubric import Rubric


def lcs_ratio(completion: Completion, answer: str, parser: Parser) -> float:
    """The LCS score of the parsed reply against the reversed text (reverse_text_tasks.lcs_score)."""
    return lcs_score(parser.parse_answer(completion) or "", answer)


class DelayedReverseText(SingleTurnEnv):
    """Reverse-text with a fixed extra latency per rollout, standing in for tool calls or sandboxes."""

    def __init__(self, *args: Any, latency_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latency_s = latency_s

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        await asyncio.sleep(self.latency_s)
        return await super().rollout(client, task, sampling)


def load_environment(
    num_examples: int = 1000,
    seed: int = 0,
    min_chars: int = 4,
    max_chars: int = 16,
    latency_s: float = 0.0,
    split: Split = "train",
) -> SingleTurnEnv:
    """Reverse a short text. Args: num_examples (tasks generated), seed, min_chars / max_chars (the
    difficulty: length of the text to reverse), latency_s (extra seconds per rollout, for benchmarks),
    split ("train", or "test": texts from a stream of their own, none of which the train split with the
    same other arguments holds; evaluate with the training env's arguments plus split = "test")."""
    if not 1 <= min_chars <= max_chars:
        raise ValueError(f"need 1 <= min_chars <= max_chars, got {min_chars} and {max_chars}")
    if split not in ("train", "test"):
        raise ValueError(f'split is "train" or "test", got {split!r}')
    tasks = reverse_text_tasks(num_examples, seed, min_chars, max_chars, split)
    rubric = Rubric([lcs_ratio], parser=Parser())
    env = (
        DelayedReverseText(tasks, rubric, latency_s=latency_s)
        if latency_s > 0
        else SingleTurnEnv(tasks, rubric)
    )
    env.description = "Reverse a short text; reward = LCS ratio against the reversed text."
    return env
