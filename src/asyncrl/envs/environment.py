"""Environments: a dataset of tasks, the logic of a rollout, and a rubric that scores it.

A task is a dict with at least `prompt` (chat messages) and usually `answer`. A rollout keeps the exact
token ids the server generated for every turn, so the trainer trains on what was sampled, never on a
re-tokenisation of decoded text.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any

from asyncrl.envs.client import ChatTurn, ModelClient
from asyncrl.envs.parsers import Parser
from asyncrl.envs.rubric import Rubric


@dataclass
class Rollout:
    task: dict[str, Any]
    prompt: list[dict[str, Any]]
    completion: list[dict[str, Any]] = field(default_factory=list)
    """Messages after the prompt: the model's turns and whatever the environment answered."""
    turns: list[ChatTurn] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    reward: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    score_s: float = 0.0
    """Seconds its rubric took to score it."""

    @property
    def policy_version(self) -> int:
        """The oldest policy that generated a token of this rollout."""
        return min((t.policy_version for t in self.turns), default=0)

    def token_sample(self) -> tuple[list[int], list[bool], list[float]]:
        """The rollout as one token sequence: ids, a mask that is True on generated tokens only, and each
        token's inference logprob (0 off the mask). Each turn's prompt must extend the tokens before it."""
        ids: list[int] = []
        mask: list[bool] = []
        logprobs: list[float] = []
        for turn in self.turns:
            if turn.prompt_token_ids[: len(ids)] != ids:
                raise ValueError("a turn's prompt does not extend the previous tokens")
            added = turn.prompt_token_ids[len(ids) :]
            ids += added + turn.token_ids
            mask += [False] * len(added) + [True] * len(turn.token_ids)
            logprobs += [0.0] * len(added) + turn.logprobs
        return ids, mask, logprobs


class Environment(abc.ABC):
    """Tasks + rollout logic + rubric. Subclasses implement `rollout`."""

    description = ""

    def __init__(self, dataset: list[dict[str, Any]], rubric: Rubric, parser: Parser | None = None) -> None:
        if not dataset:
            raise ValueError("an environment needs at least one task")
        self.dataset = list(dataset)
        self.rubric = rubric
        self.parser = parser or rubric.parser

    @abc.abstractmethod
    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        """Talk to the model about `task` (unscored)."""

    async def run(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        """A scored rollout of `task`."""
        rollout = await self.rollout(client, task, sampling)
        start = time.perf_counter()
        score = await self.rubric.score(
            rollout.prompt, rollout.completion, task.get("answer"), rollout.state, task
        )
        rollout.reward, rollout.metrics = score.reward, score.metrics
        rollout.score_s = time.perf_counter() - start
        return rollout


class SingleTurnEnv(Environment):
    """One model turn answers the task's prompt."""

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        turn = await client.chat(task["prompt"], sampling)
        return Rollout(task=task, prompt=task["prompt"], completion=[turn.message], turns=[turn])
