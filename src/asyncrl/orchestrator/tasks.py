"""The order in which tasks are handed out, and what a restarted orchestrator must hand out again."""

from __future__ import annotations

import random

from asyncrl.errors import UserError


class NoTasksLeftError(UserError):
    """The difficulty filter retired every task of the environment."""


class TaskStream:
    """Task indices in a seeded order, reshuffled every epoch.

    `cursor` counts the positions of the order handed out so far. `requeued` tasks (those in flight when a
    previous orchestrator stopped) come out first, so a restart neither skips nor repeats a task. Retired
    tasks (too easy or too hard, see the difficulty filter) are skipped in later epochs.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        cursor: int = 0,
        requeued: list[int] | None = None,
        retired: list[int] | None = None,
    ) -> None:
        self.size, self.seed, self.cursor = size, seed, cursor
        self.requeued = list(requeued or [])
        self.retired = set(retired or [])
        self._epoch, self._order = -1, list[int]()

    def next(self) -> int:
        if self.requeued:
            return self.requeued.pop(0)
        if len(self.retired) >= self.size:
            raise NoTasksLeftError(
                "the difficulty filter retired every task (each was all right or all wrong in its group); "
                "turn off orchestrator.difficulty_filter, widen easy_reward/hard_reward, or use more tasks"
            )
        while True:
            index = self._at(self.cursor)
            self.cursor += 1
            if index not in self.retired:
                return index

    def retire(self, index: int) -> None:
        self.retired.add(index)

    def _at(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch != self._epoch:
            self._order = list(range(self.size))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(self._order)
            self._epoch = epoch
        return self._order[offset]
