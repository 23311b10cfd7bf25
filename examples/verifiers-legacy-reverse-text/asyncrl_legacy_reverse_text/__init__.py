"""asyncrl's reverse-text task as an environment of verifiers' 2025 API (environment id
`asyncrl-legacy-reverse-text`, `source = "verifiers-legacy"`).

The same tasks and reward as the built-in environment (`asyncrl.envs.reverse_text`): a short text to
reverse, scored by the LCS ratio of the reply against the reversed text; the held-out texts are its eval
dataset. Copy this package to start an environment of your own: `load_environment` returns a verifiers
environment (here a SingleTurnEnv over a `datasets.Dataset` with `prompt` and `answer` columns) whose
Rubric holds the reward functions.
"""

from __future__ import annotations

import verifiers as vf
from datasets import Dataset

from asyncrl.envs.reverse_text_tasks import lcs_score, reverse_text_tasks


def lcs_ratio(completion: vf.Messages, answer: str, **kwargs: object) -> float:
    """1.0 for the exact reversal, partial credit otherwise."""
    return lcs_score(str(completion[-1]["content"] or "").strip(), answer)


def load_environment(
    num_examples: int = 1000, seed: int = 0, min_chars: int = 4, max_chars: int = 16
) -> vf.Environment:
    def split(name: str) -> Dataset:
        return Dataset.from_list(reverse_text_tasks(num_examples, seed, min_chars, max_chars, name))

    return vf.SingleTurnEnv(
        dataset=split("train"), eval_dataset=split("test"), rubric=vf.Rubric(funcs=[lcs_ratio])
    )
