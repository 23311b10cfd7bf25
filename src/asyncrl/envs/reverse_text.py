"""The built-in reverse-text task: give the model a short text, reward it for returning it reversed.

Tasks are generated from a seed, so the default job needs no dataset download.
"""

from __future__ import annotations

import random
from typing import Any

SYSTEM_PROMPT = "Reverse the text character by character."
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
        prompt = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]
        tasks.append({"prompt": prompt, "answer": text[::-1]})
    return tasks


def sft_records(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks as SFT chat records: the prompt messages followed by the answer as the assistant turn."""
    return [{"messages": [*t["prompt"], {"role": "assistant", "content": t["answer"]}]} for t in tasks]
