"""Groups of rollouts, generated continuously and handed out a batch at a time.

Generation does not stop at step boundaries: while one batch is being trained on, groups for the next
ones keep running, up to `async_level` steps ahead of the weights the servers serve. Finished groups
queue up in completion order; each batch takes the first ones that pass its filters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from asyncrl.envs.environment import Environment, Rollout
from asyncrl.errors import UserError
from asyncrl.orchestrator.advantages import group_advantages
from asyncrl.orchestrator.config import OrchestratorConfig
from asyncrl.orchestrator.pool import InferencePool
from asyncrl.orchestrator.tasks import TaskStream
from asyncrl.orchestrator.weights import WeightWatcher
from asyncrl.transport.layout import HEARTBEAT_S

log = logging.getLogger("asyncrl.orchestrator")
FAILED_GROUPS_IN_A_ROW = 32
"""Groups in a row with a failed rollout after which the environment counts as broken, and the run stops."""
POLL_S = 0.2
"""How often a filling batch looks again whether newer weights let more groups start."""


class EnvironmentBrokenError(UserError):
    """Rollout after rollout fails: the environment is broken, not unlucky."""


@dataclass
class Group:
    task_index: int
    rollouts: list[Rollout]
    advantages: list[float]
    seconds: float


@dataclass
class BatchStats:
    groups: list[Group] = field(default_factory=list)
    sampled_rewards: list[float] = field(default_factory=list)
    """Rewards of every rollout this batch judged, kept or filtered out (stale ones aside): what the
    policy earns, which the kept groups alone would misstate once filters drop all-right groups."""
    judged: int = 0
    """Groups this batch judged, kept or filtered out (stale ones aside)."""
    discarded_stale: int = 0
    dropped_zero_advantage: int = 0
    dropped_too_long: int = 0
    dropped_difficulty: int = 0
    dropped_errors: int = 0
    """Rollouts of groups left out because one of their rollouts failed (`Rollout.error`)."""
    rollout_seconds: float = 0.0
    scoring_s: float = 0.0
    """Seconds the rubrics took, summed over every rollout this batch received (stale ones too)."""
    weights_wait_s: float = 0.0


async def run_group(
    env: Environment, pool: InferencePool, task_index: int, config: OrchestratorConfig
) -> Group:
    start = time.perf_counter()
    task: dict[str, Any] = env.dataset[task_index]
    sampling = config.sampling.model_dump()
    if config.verify.proofs:
        sampling["toploc"] = True
    if config.record_routing:
        sampling["return_routed_experts"] = True
    rollouts = await pool.run(lambda client: env.run_group(client, task, sampling, config.group_size))
    advantages = group_advantages([r.reward for r in rollouts], config.normalize_advantages)
    return Group(task_index, list(rollouts), advantages, time.perf_counter() - start)


def sequence_length(rollout: Rollout) -> int:
    last = rollout.turns[-1] if rollout.turns else None
    return len(last.prompt_token_ids) + len(last.token_ids) if last else 0


class GroupStream:
    """Keeps up to max_inflight rollouts (whole groups) running and fills batches from the finished ones."""

    def __init__(
        self,
        env: Environment,
        pool: InferencePool,
        tasks: TaskStream,
        watcher: WeightWatcher,
        config: OrchestratorConfig,
    ) -> None:
        self.env, self.pool, self.tasks, self.watcher, self.config = env, pool, tasks, watcher, config
        self.per_batch = config.batch_size // config.group_size
        self.slots = max(1, config.max_inflight // config.group_size)
        self.running: dict[asyncio.Task[Group], int] = {}
        self.finished: list[Group] = []
        self.failed_in_a_row = 0

    def pending_tasks(self) -> list[int]:
        """Tasks handed out but in no batch yet: a restart must run them again."""
        return [*(g.task_index for g in self.finished), *self.running.values(), *self.tasks.requeued]

    def _start_groups(self, step: int, accepted: int) -> None:
        """Start groups while slots are free and the batch each would land in is at most async_level
        steps ahead of the servers' weights (batch N needs weights >= N - 1 - async_level)."""
        while len(self.running) < self.slots:
            lands_in = step + (accepted + len(self.finished) + len(self.running)) // self.per_batch
            if self.watcher.version < lands_in - 1 - self.config.async_level:
                return
            index = self.tasks.next()
            self.running[asyncio.create_task(run_group(self.env, self.pool, index, self.config))] = index

    def _admit(self, group: Group, step: int, stats: BatchStats) -> None:
        """Put a finished group in the batch of `step`, or count why it is left out."""
        cfg = self.config
        rewards = [r.reward for r in group.rollouts]
        stats.rollout_seconds += group.seconds * len(group.rollouts)
        stats.scoring_s += sum(r.score_s for r in group.rollouts)
        # Errors first: a failed rollout has no tokens, so no policy, and would otherwise pass for stale
        # (and a broken environment would never stop the run).
        failed = [r.error for r in group.rollouts if r.error]
        self.failed_in_a_row = self.failed_in_a_row + 1 if failed else 0
        if self.failed_in_a_row >= FAILED_GROUPS_IN_A_ROW:
            raise EnvironmentBrokenError(
                f"the last {self.failed_in_a_row} groups each had a failed rollout; the last: {failed[0]}"
            )
        if failed:
            stats.dropped_errors += len(group.rollouts)
            return
        if min(r.policy_version for r in group.rollouts) < step - cfg.max_off_policy_steps:
            stats.discarded_stale += len(group.rollouts)
            return
        stats.sampled_rewards += rewards
        stats.judged += 1
        if cfg.difficulty_filter and (min(rewards) >= cfg.easy_reward or max(rewards) <= cfg.hard_reward):
            self.tasks.retire(group.task_index)
            stats.dropped_difficulty += len(group.rollouts)
        elif cfg.drop_zero_advantage and not any(group.advantages):
            stats.dropped_zero_advantage += len(group.rollouts)
        elif cfg.max_seq_len is not None and max(map(sequence_length, group.rollouts)) > cfg.max_seq_len:
            stats.dropped_too_long += len(group.rollouts)
        else:
            stats.groups.append(group)

    def _counted(self, stats: BatchStats) -> int:
        """The groups that count towards the batch: those kept, or with refill off all those judged."""
        return len(stats.groups) if self.config.refill else stats.judged

    def _full(self, stats: BatchStats) -> bool:
        return self._counted(stats) >= self.per_batch and bool(stats.groups)

    async def next_batch(self, step: int) -> BatchStats:
        """The groups of batch `step`, waiting for rollouts (and for weights when no group may start)."""
        stats = BatchStats()
        last_progress = time.monotonic()
        while True:
            while self.finished and not self._full(stats):
                self._admit(self.finished.pop(0), step, stats)
            if self._full(stats):
                self._start_groups(step + 1, 0)  # keep the servers busy while this batch is written
                return stats
            self._start_groups(step, self._counted(stats))
            if not self.running:
                version = step - 1 - self.config.async_level
                stats.weights_wait_s += await self.watcher.wait_for(
                    version, self.config.weights_timeout_s, f"step {step}"
                )
                continue
            done, _ = await asyncio.wait(self.running, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                del self.running[finished]
                self.finished.append(finished.result())
            if done:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > HEARTBEAT_S:
                log.info(
                    "step %d: %d/%d groups done, waiting for %d running groups on %d live servers",
                    step, len(stats.groups), self.per_batch, len(self.running), len(self.pool.live()),
                )  # fmt: skip
                last_progress = time.monotonic()

    async def close(self) -> None:
        for running in self.running:
            running.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
