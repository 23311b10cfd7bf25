"""A verifiers v1 taskset as an asyncrl environment.

The orchestrator owns the taskset (loaded here, as verifiers' own train clients do) and sends each task's
data to an env-server worker, with a train client pointed at the inference server that the rollout was
given: the worker runs the harness, whose model calls reach `/inference/v1/generate` through verifiers'
renderers, scores the trace, and sends it back. Each trainable branch of the trace becomes a training
sequence (its sampled mask the loss mask, the sampler's logprobs the inference logprobs); the trace's
reward is the rollout's.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from asyncrl.envs.client import ModelClient
from asyncrl.envs.environment import Environment, Rollout
from asyncrl.envs.rubric import Rubric
from asyncrl.envs.verifiers.branches import branch_turns
from asyncrl.envs.verifiers.config import VerifiersConfig
from asyncrl.envs.verifiers.servers import EnvServers, EpisodeError
from asyncrl.errors import UserError

log = logging.getLogger("asyncrl.envs")
API_KEY_VAR = "ASYNCRL_API_KEY"
"""The variable the workers' train clients read the inference servers' API key from."""


class TasksetLoadError(UserError):
    """The taskset could not be found or configured; the message says which and why."""


class TasksetEnvironment(Environment):
    """The tasks of a verifiers v1 taskset, run by env-server workers; see the module doc."""

    def __init__(
        self, taskset_id: str, args: dict[str, Any], config: VerifiersConfig, tokenizer: str, log_dir: Path
    ) -> None:
        try:
            import verifiers.v1 as vf
            from verifiers.v1.serve import EnvClient, env_config_data
        except ModuleNotFoundError:
            raise TasksetLoadError(
                "source = \"verifiers\" needs verifiers: pip install 'asyncrl[verifiers]'"
            ) from None
        if not Path(tokenizer).is_dir() and "/" not in tokenizer:
            raise TasksetLoadError(
                f"verifiers' renderer needs the model's tokenizer, and {tokenizer!r} is neither a local dir "
                "nor a Hub id: give verifiers.tokenizer (the served model's HF dir)"
            )
        agent = {**config.agent, "harness": config.harness, "runtime": config.runtime}
        try:
            self.env_config = vf.resolve_env_config({"taskset": {"id": taskset_id, **args}, "agent": agent})
            tasks = list(vf.load_taskset(self.env_config.taskset))
        except (ModuleNotFoundError, TypeError, ValueError, AttributeError) as e:
            raise TasksetLoadError(
                f"verifiers taskset {taskset_id!r}: {e}".splitlines()[0]
                + " (install its package into this environment; its id is the module's name)"
            ) from None
        super().__init__([t.data.model_dump(mode="json", exclude_defaults=True) for t in tasks], Rubric([]))
        self.description = f"verifiers taskset {taskset_id}"
        self.config = config
        self.tokenizer = tokenizer
        self.servers = EnvServers(
            [sys.executable, "-m", "asyncrl.envs.verifiers.worker"],
            {"env": env_config_data(self.env_config)},
            EnvClient,
            config.workers,
            log_dir,
            config.startup_timeout_s,
        )
        self._clients: dict[str, Any] = {}

    async def __aenter__(self) -> TasksetEnvironment:
        await self.servers.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.servers.close()

    def _train_client(self, base_url: str) -> Any:
        import verifiers.v1 as vf

        if base_url not in self._clients:
            self._clients[base_url] = vf.TrainClientConfig.model_validate(
                {
                    "base_url": base_url.rstrip("/") + "/v1",
                    "api_key_var": API_KEY_VAR,
                    "renderer": self.config.renderer,
                    "renderer_model_name": self.tokenizer,
                }
            )
        return self._clients[base_url]

    async def run(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        return await self.rollout(client, task, sampling)

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        """One episode of `task`, scored by the taskset, retried on errors up to `verifiers.retries` times;
        a rollout with `error` set when every try failed."""
        import verifiers.v1 as vf

        # The server serves these weights or newer for the whole episode: a lower bound on the policy of
        # every token, which is what the staleness bound needs.
        policy_floor = client.serving_version
        request = {
            "client": self._train_client(client.base_url),
            "model": client.model,
            "sampling": vf.SamplingConfig(
                temperature=sampling["temperature"],
                top_p=sampling["top_p"],
                max_tokens=sampling["max_tokens"],
            ),
            "task_data": task,
        }
        error = ""
        for _ in range(self.config.retries + 1):
            try:
                episode = await self.servers.run(self.config.episode_timeout_s, **request)
            except (EpisodeError, RuntimeError) as e:  # RuntimeError: the worker refused the request
                error = str(e)
                continue
            rollout = episode_rollout(task, episode, policy_floor)
            if rollout.error is None:
                return rollout
            error = rollout.error
        log.warning(
            "an episode failed, tried %d times; its group is left out: %s", self.config.retries + 1, error
        )
        return Rollout(task=task, prompt=[], error=error)


def episode_rollout(task: dict[str, Any], episode: Any, policy_floor: int) -> Rollout:
    """A verifiers `WireEpisode` as a rollout: its trainable trace's branches as turns, its reward and
    metrics; `error` set when the episode failed or left nothing to train on."""
    from verifiers.v1.dialects.chat import message_to_wire

    traces = [t for t in episode.traces if t.agent.trainable]
    problems = [e.message for e in episode.errors] + [e.message for t in episode.traces for e in t.errors]
    if not episode.ok or problems:
        return Rollout(task=task, prompt=[], error="; ".join(problems) or "the episode failed")
    if len(traces) != 1:
        return Rollout(
            task=task, prompt=[], error=f"asyncrl trains one agent an episode; it had {len(traces)}"
        )
    trace = traces[0]
    branches = [b for b in trace.branches if b.trainable]
    turns = []
    for branch in branches:
        replies = [message_to_wire(m) for m in branch.messages if m.role == "assistant"]
        turns += branch_turns(
            branch.token_ids, branch.sampled_mask, branch.logprobs, replies, policy_floor, trace.is_truncated
        )
    if not turns:
        return Rollout(
            task=task, prompt=[], error="the episode's trace holds no generated tokens (an empty trace)"
        )
    messages = [message_to_wire(m) for m in branches[-1].messages]
    first_reply = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
    return Rollout(
        task=task,
        prompt=messages[:first_reply],
        completion=messages[first_reply:],
        turns=turns,
        reward=trace.reward,
        metrics={name: value for name, value in trace.metrics.items() if value is not None},
    )
