"""asyncrl's reverse-text task as a verifiers v1 taskset (taskset id `asyncrl-reverse-text`).

The same tasks and reward as the built-in environment (`asyncrl.envs.reverse_text`): a short text to
reverse, scored by the LCS ratio of the reply against the reversed text. Copy this package to start a
taskset of your own: a `TaskData` with the fields a task needs, a `Task` with `@vf.reward` (and
`@vf.metric`) methods, a `Taskset` that yields tasks, and `__all__` naming the Taskset.
"""

from __future__ import annotations

from collections.abc import Iterator

import verifiers.v1 as vf

from asyncrl.envs.reverse_text_tasks import lcs_score, reverse_text_tasks


class ReverseTextData(vf.TaskData):
    answer: str
    """The text reversed."""


class ReverseTextTask(vf.Task[ReverseTextData]):
    @vf.reward(weight=1.0)
    async def lcs_ratio(self, trace: vf.Trace) -> float:
        """2 * LCS / (len(reply) + len(answer)): 1.0 for the exact reversal, partial credit otherwise."""
        return lcs_score(trace.last_reply, self.data.answer)

    @vf.metric
    async def exact(self, trace: vf.Trace) -> float:
        return float(trace.last_reply == self.data.answer)


class ReverseTextConfig(vf.TasksetConfig):
    num_examples: int = 1000
    seed: int = 0
    min_chars: int = 4
    max_chars: int = 16


class ReverseTextTaskset(vf.Taskset[ReverseTextTask, ReverseTextConfig]):
    def load(self) -> Iterator[ReverseTextTask]:
        c = self.config
        for task in reverse_text_tasks(c.num_examples, c.seed, c.min_chars, c.max_chars):
            prompt = task["prompt"][0]["content"]
            yield ReverseTextTask(ReverseTextData(prompt=prompt, answer=task["answer"]), c.task)


__all__ = ["ReverseTextTaskset"]
