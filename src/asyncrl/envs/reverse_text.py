"""The built-in reverse-text task: give the model a short text, reward it for returning it reversed.

Tasks are generated from a seed, so the default job needs no dataset download.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from asyncrl.envs.client import ModelClient
from asyncrl.envs.environment import Rollout, SingleTurnEnv
from asyncrl.envs.parsers import Completion, Parser
from asyncrl.envs.rubric import Rubric

# The instruction is short and in the user turn: every prompt token costs the trainer a forward and a
# backward pass, and a tiny model learns the task from examples, not from the wording.
INSTRUCTION = "Reverse: "
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def random_text(rng: random.Random, min_chars: int, max_chars: int) -> str:
    """Lower-case words separated by single spaces, `min_chars` to `max_chars` long."""
    target = rng.randint(min_chars, max_chars)
    words: list[str] = []
    while sum(map(len, words)) + max(0, len(words) - 1) < target:
        words.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(2, 7))))
    return " ".join(words)[:target].strip()


def reverse_text_tasks(n: int, seed: int, min_chars: int = 4, max_chars: int = 16) -> list[dict[str, Any]]:
    """`n` tasks: chat `prompt` messages and the reversed text as `answer`."""
    rng = random.Random(seed)
    tasks = []
    for _ in range(n):
        text = random_text(rng, min_chars, max_chars)
        prompt = [{"role": "user", "content": INSTRUCTION + text}]
        tasks.append({"prompt": prompt, "answer": text[::-1]})
    return tasks


def sft_records(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks as SFT chat records: the prompt messages followed by the answer as the assistant turn."""
    return [{"messages": [*t["prompt"], {"role": "assistant", "content": t["answer"]}]} for t in tasks]


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of two strings."""
    previous = [0] * (len(b) + 1)
    for ch in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if ch == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def lcs_ratio(completion: Completion, answer: str, parser: Parser) -> float:
    """2 * LCS / (len(prediction) + len(answer)): 1.0 for the exact reversal, partial credit otherwise."""
    prediction = parser.parse_answer(completion) or ""
    if not prediction and not answer:
        return 1.0
    return 2 * lcs_length(prediction, answer) / (len(prediction) + len(answer))


class DelayedReverseText(SingleTurnEnv):
    """Reverse-text with a fixed extra latency per rollout, standing in for tool calls or sandboxes."""

    def __init__(self, *args: Any, latency_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latency_s = latency_s

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        await asyncio.sleep(self.latency_s)
        return await super().rollout(client, task, sampling)


def load_environment(
    num_examples: int = 1000, seed: int = 0, min_chars: int = 4, max_chars: int = 16, latency_s: float = 0.0
) -> SingleTurnEnv:
    """Reverse a short text. Args: num_examples (tasks generated), seed, min_chars / max_chars (the
    difficulty: length of the text to reverse), latency_s (extra seconds per rollout, for benchmarks)."""
    if not 1 <= min_chars <= max_chars:
        raise ValueError(f"need 1 <= min_chars <= max_chars, got {min_chars} and {max_chars}")
    tasks = reverse_text_tasks(num_examples, seed, min_chars, max_chars)
    rubric = Rubric([lcs_ratio], parser=Parser())
    env = (
        DelayedReverseText(tasks, rubric, latency_s=latency_s)
        if latency_s > 0
        else SingleTurnEnv(tasks, rubric)
    )
    env.description = "Reverse a short text; reward = LCS ratio against the reversed text."
    return env
