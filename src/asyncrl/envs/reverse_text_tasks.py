"""The reverse-text task's data and score in plain Python, importing nothing outside the standard library:
the built-in environment (reverse_text.py), its verifiers packages (examples/) and the TRL benchmark share
them.

Tasks are generated from a seed, so the default job needs no dataset download. The test split holds
texts the train split of the same arguments does not: a held-out set to evaluate on during training.
"""

from __future__ import annotations

import random
from typing import Any, Literal

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


def lcs_score(reply: str, answer: str) -> float:
    """2 * LCS / (len(reply) + len(answer)): 1.0 for the exact reversal, partial credit otherwise."""
    if not reply and not answer:
        return 1.0
    return 2 * lcs_length(reply, answer) / (len(reply) + len(answer))
