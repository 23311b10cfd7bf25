"""Environments: a dataset of tasks, the logic of a rollout, and a rubric that scores it.

A task is a dict with at least `prompt` (chat messages) and usually `answer`. A rollout keeps the exact
token ids the server generated for every turn, so the trainer trains on what was sampled, never on a
re-tokenisation of decoded text.
"""

from __future__ import annotations

import abc
import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from asyncrl.envs.client import ChatTurn, ModelClient
from asyncrl.envs.parsers import Parser
from asyncrl.envs.rubric import Rubric

if TYPE_CHECKING:  # torch only where routing is recorded: commands that load no model skip its import
    import torch


class TokenSample(NamedTuple):
    """One training sequence of a rollout."""

    ids: list[int]
    mask: list[bool]
    """True on generated tokens only."""
    logprobs: list[float]
    """Each token's inference logprob (0 off the mask)."""
    routed_experts: torch.Tensor | None = None
    """[tokens, MoE layers, k] the experts that produced each generated token (asyncrl.moe.NOT_REPLAYED
    elsewhere), when the server returned them."""


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
    error: str | None = None
    """Why the rollout failed (an environment that raised, hung or left nothing to train on): it has no
    turns, and its group is left out of training."""

    @property
    def policy_version(self) -> int:
        """The oldest policy that generated a token of this rollout."""
        return min((t.policy_version for t in self.turns), default=0)

    def token_samples(self) -> list[TokenSample]:
        """The rollout as training sequences: ids, a mask that is True on generated tokens only, and each
        token's inference logprob (0 off the mask), with the routed experts of the generated tokens when
        the server returned them. Turns whose prompt extends the tokens before it join that sequence; a
        turn whose prompt does not (a history re-rendered differently, a branch of a verifiers trace)
        starts a new one."""
        sequences: list[tuple[TokenSample, list[ChatTurn]]] = []
        for turn in self.turns:
            if not sequences or turn.prompt_token_ids[: len(sequences[-1][0].ids)] != sequences[-1][0].ids:
                sequences.append((TokenSample([], [], []), []))
            (ids, mask, logprobs, _), turns = sequences[-1]
            added = turn.prompt_token_ids[len(ids) :]
            ids += added + turn.token_ids
            mask += [False] * len(added) + [True] * len(turn.token_ids)
            logprobs += [0.0] * len(added) + turn.logprobs
            turns.append(turn)
        return [sample._replace(routed_experts=_routing(sample, turns)) for sample, turns in sequences]


class Environment(abc.ABC):
    """Tasks + rollout logic + rubric. Subclasses implement `rollout`."""

    description = ""

    def __init__(self, dataset: list[dict[str, Any]], rubric: Rubric, parser: Parser | None = None) -> None:
        if not dataset:
            raise ValueError("an environment needs at least one task")
        self.dataset = list(dataset)
        self.rubric = rubric
        self.parser = parser or rubric.parser

    async def __aenter__(self) -> Environment:
        """Start what rollouts need beyond the model (verifiers' env servers); asyncrl's own need nothing."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop what `__aenter__` started."""
        return None

    @abc.abstractmethod
    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        """Talk to the model about `task` (unscored)."""

    async def run(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        """A scored rollout of `task`."""
        return await self.score(await self.rollout(client, task, sampling))

    async def run_group(
        self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any], n: int
    ) -> list[Rollout]:
        """`n` scored rollouts of `task` (a group); environments whose rollouts can share one request
        override it."""
        return list(await asyncio.gather(*(self.run(client, task, sampling) for _ in range(n))))

    async def score(self, rollout: Rollout) -> Rollout:
        """`rollout` with its rubric's reward and metrics."""
        start = time.perf_counter()
        task = rollout.task
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

    async def run_group(
        self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any], n: int
    ) -> list[Rollout]:
        """The group as one request for `n` choices: the server renders and prefills the prompt once, and
        one HTTP exchange carries four rollouts instead of one. A subclass with its own `rollout` keeps one
        request per rollout."""
        if type(self).rollout is not SingleTurnEnv.rollout:
            return await super().run_group(client, task, sampling, n)
        prompt = task["prompt"]
        turns = await client.chat_choices(prompt, sampling, n)
        rollouts = [Rollout(task=task, prompt=prompt, completion=[t.message], turns=[t]) for t in turns]
        return list(await asyncio.gather(*map(self.score, rollouts)))


def _routing(sample: TokenSample, turns: list[ChatTurn]) -> torch.Tensor | None:
    """The sample's routed experts laid along its tokens: each turn's on its generated tokens (the last
    ones of the sample when the turn was added), NOT_REPLAYED elsewhere; None when no turn has any."""
    recorded = [t.routed_experts for t in turns if t.routed_experts is not None]
    if not recorded:
        return None
    import torch

    from asyncrl.moe import NOT_REPLAYED

    out = torch.full((len(sample.ids), *recorded[0].shape[1:]), NOT_REPLAYED, dtype=torch.int16)
    for turn in turns:
        end = len(turn.prompt_token_ids) + len(turn.token_ids)
        if turn.routed_experts is not None:
            out[end - len(turn.token_ids) : end] = turn.routed_experts
    return out
