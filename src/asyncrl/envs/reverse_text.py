"""The built-in reverse-text task: give the model a short text, reward it for returning it reversed.

Tasks are generated from a seed, so the default job needs no dataset download. The test split holds
texts the train split of the same arguments does not: a held-out set to evaluate on during training.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Literal

from asyncrl.envs.client import ModelClient
from asyncrl.envs.environment import Rollout, SingleTurnEnv
from asyncrl.envs.parsers import Completion, Parser
from asyncrl.envs.rubric import Rubric

# The instruction is short and in the user turn: every prompt token costs the trainer a forward and a
# backward pass, and a tiny model learns the task from examples, not from the wording.
INSTRUCTION = "Reverse: "
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
Split = Literal["train", "test"]
DRAWS_PER_TEXT = 100
"""Draws the test split may spend per text before it decides the train split holds nearly every text of
these lengths (only very short texts run out)."""


def random_text(rng: random.Random, min_chars: int, max_chars: int) -> str:
    """Lower-case words separated by single spaces, `min_chars` to `max_chars` long."""
    target = rng.randint(min_chars, max_chars)
    words: list[str] = []
    while sum(map(len, words)) + max(0, len(words) - 1) < target:
        words.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(2, 7))))
    return " ".join(words)[:target].strip()


def reverse_text_tasks(
    n: int, seed: int, min_chars: int = 4, max_chars: int = 16, split: Split = "train"
) -> list[dict[str, Any]]:
    """`n` tasks: chat `prompt` messages and the reversed text as `answer`."""
    texts = (held_out_texts if split == "test" else train_texts)(n, seed, min_chars, max_chars)
    return [
        {"prompt": [{"role": "user", "content": INSTRUCTION + text}], "answer": text[::-1]} for text in texts
    ]


def train_texts(n: int, seed: int, min_chars: int, max_chars: int) -> list[str]:
    rng = random.Random(seed)
    return [random_text(rng, min_chars, max_chars) for _ in range(n)]


def held_out_texts(n: int, seed: int, min_chars: int, max_chars: int) -> list[str]:
    """`n` texts from a random stream of their own, leaving out every text of the train split with the same
    arguments (`train_texts(n, seed, ...)`)."""
    train = set(train_texts(n, seed, min_chars, max_chars))
    # A string seed: a stream that no integer seed of the train split draws.
    rng = random.Random(f"reverse-text test split {seed}")
    texts: list[str] = []
    for _ in range(DRAWS_PER_TEXT * n):
        text = random_text(rng, min_chars, max_chars)
        if text not in train:
            texts.append(text)
            if len(texts) == n:
                return texts
    raise ValueError(
        f"the train split of {n} texts of {min_chars} to {max_chars} characters holds nearly all of them, "
        "leaving too few to hold out: raise min_chars or lower num_examples"
    )


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
