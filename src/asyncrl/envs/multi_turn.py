"""Multi-turn environments: the model and the environment take turns until the environment is done.

Every model turn's prompt must extend the tokens of the turns before it, so the rollout is one token
sequence with the environment's tokens masked out. The chat template re-renders earlier turns from
text; where that would tokenise a generated turn differently, the turn is generated from the exact
earlier ids plus the template's tokens for the new messages instead (a splice), and counted in
`state["spliced_turns"]`.
"""

from __future__ import annotations

import abc
from typing import Any

from asyncrl.envs.client import ChatTurn, ModelClient
from asyncrl.envs.environment import Environment, Rollout
from asyncrl.envs.parsers import Parser
from asyncrl.envs.rubric import Rubric
from asyncrl.inference.api.output_parsers import assistant_message


class MultiTurnEnv(Environment):
    tools: list[dict[str, Any]] | None = None
    """Tool schemas offered to the model on every turn (ToolEnv sets them)."""

    def __init__(
        self, dataset: list[dict[str, Any]], rubric: Rubric, parser: Parser | None = None, max_turns: int = 8
    ) -> None:
        super().__init__(dataset, rubric, parser)
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.max_turns = max_turns

    @abc.abstractmethod
    async def env_response(
        self, messages: list[dict[str, Any]], state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The environment's messages after the model's last turn."""

    async def is_completed(self, messages: list[dict[str, Any]], state: dict[str, Any]) -> bool:
        """True when the rollout should end after the model's last turn."""
        return False

    async def run(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        rollout = await super().run(client, task, sampling)
        rollout.metrics.update(turns=len(rollout.turns), spliced_turns=rollout.state["spliced_turns"])
        return rollout

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        rollout = Rollout(task=task, prompt=list(task["prompt"]), state={"spliced_turns": 0})
        messages = list(task["prompt"])
        for _ in range(self.max_turns):
            turn = await self._generate(client, messages, rollout, sampling)
            rollout.turns.append(turn)
            rollout.completion.append(turn.message)
            messages.append(turn.message)
            if await self.is_completed(messages, rollout.state):
                break
            replies = await self.env_response(messages, rollout.state)
            rollout.completion += replies
            messages += replies
        rollout.state["turns"] = len(rollout.turns)
        return rollout

    async def _generate(
        self, client: ModelClient, messages: list[dict[str, Any]], rollout: Rollout, sampling: dict[str, Any]
    ) -> ChatTurn:
        if not rollout.turns:
            return await client.chat(messages, sampling, self.tools)
        previous = rollout.turns[-1].prompt_token_ids + rollout.turns[-1].token_ids
        rendered = await client.tokenize(messages, self.tools, add_generation_prompt=True)
        if rendered[: len(previous)] == previous:
            return await client.chat(messages, sampling, self.tools)
        # Splice: the exact earlier ids, then what the template renders after the model's last turn.
        last_model_turn = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
        head = await client.tokenize(messages[: last_model_turn + 1], self.tools, add_generation_prompt=False)
        text, turn = await client.complete(previous + rendered[len(head) :], sampling)
        turn.message = assistant_message(text, "hermes" if self.tools else None, None)
        rollout.state["spliced_turns"] += 1
        return turn
