"""Rubrics: weighted reward functions that take what they need by name, sync or async.

A reward function declares the inputs it wants as parameters, chosen from `prompt`, `completion`,
`answer`, `state`, `task` and `parser` (or `**kwargs` for all of them), and returns a float:

    def exact(completion, answer, parser) -> float:
        return float(parser.parse_answer(completion) == answer)

Every function's score is kept as a metric under its name; the reward is their weighted sum.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asyncrl.envs.parsers import Parser

INPUTS = ("prompt", "completion", "answer", "state", "task", "parser")
RewardFn = Callable[..., Any]


class RubricError(Exception):
    """A reward function asks for an input the rubric cannot give, or returns a non-number."""


@dataclass
class Score:
    reward: float
    metrics: dict[str, float]


class Rubric:
    def __init__(
        self, funcs: list[RewardFn], weights: list[float] | None = None, parser: Parser | None = None
    ) -> None:
        weights = [1.0] * len(funcs) if weights is None else weights
        if len(weights) != len(funcs):
            raise RubricError(f"{len(funcs)} reward functions but {len(weights)} weights")
        self.funcs = funcs
        self.weights = weights
        self.parser = parser or Parser()
        self._wanted = [self._inputs_of(f) for f in funcs]

    @staticmethod
    def _inputs_of(func: RewardFn) -> tuple[str, ...]:
        params = inspect.signature(func).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return INPUTS
        names = tuple(p.name for p in params)
        unknown = [n for n in names if n not in INPUTS]
        if unknown:
            raise RubricError(
                f"reward function {func.__name__} asks for {unknown}; it may take {', '.join(INPUTS)}"
            )
        return names

    async def score(
        self,
        prompt: Any,
        completion: Any,
        answer: Any = None,
        state: dict[str, Any] | None = None,
        task: dict[str, Any] | None = None,
    ) -> Score:
        """Run every reward function (async ones concurrently) and combine them."""
        available = {
            "prompt": prompt,
            "completion": completion,
            "answer": answer,
            "state": state if state is not None else {},
            "task": task if task is not None else {},
            "parser": self.parser,
        }

        async def run(func: RewardFn, wanted: tuple[str, ...]) -> float:
            value = func(**{name: available[name] for name in wanted})
            if inspect.isawaitable(value):
                value = await value
            if not isinstance(value, int | float):
                raise RubricError(f"reward function {func.__name__} returned {value!r}, not a number")
            return float(value)

        values = await asyncio.gather(*(run(f, w) for f, w in zip(self.funcs, self._wanted, strict=True)))
        metrics = {f.__name__: v for f, v in zip(self.funcs, values, strict=True)}
        reward = sum(w * v for w, v in zip(self.weights, values, strict=True))
        return Score(reward, metrics)
