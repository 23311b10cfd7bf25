"""GroupStream: continuous generation bounded by async_level, staleness, and the pending tasks it reports.

The environment here answers without a model: each rollout finishes when the test releases it and
carries the policy version the "servers" had when it started, so the schedule is fully under control.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from asyncrl.envs.client import ChatTurn, ModelClient
from asyncrl.envs.environment import Environment, Rollout
from asyncrl.envs.rubric import Rubric
from asyncrl.orchestrator.config import ClientConfig, OrchestratorConfig
from asyncrl.orchestrator.groups import EnvironmentBrokenError, Group, GroupStream
from asyncrl.orchestrator.loop import to_samples
from asyncrl.orchestrator.pool import InferencePool
from asyncrl.orchestrator.tasks import TaskStream
from asyncrl.orchestrator.weights import WeightWatcher


class GatedEnv(Environment):
    """Rollouts of task i score i and wait for `release` before finishing."""

    def __init__(self, size: int) -> None:
        tasks = [{"prompt": [{"role": "user", "content": str(i)}], "answer": str(i)} for i in range(size)]
        super().__init__(tasks, Rubric([lambda completion, answer: float(answer)]))
        self.release = asyncio.Event()
        self.version = 0
        self.started: list[str] = []
        self.stale_left = 0
        self.stale_tasks: set[int] = set()

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        self.started.append(task["answer"])
        version = self.version
        if self.stale_left:
            self.stale_left -= 1
            self.stale_tasks.add(int(task["answer"]))
            version = 0
        await self.release.wait()
        turn = ChatTurn({"role": "assistant", "content": "x"}, [1], [2], [-0.1], version, "stop")
        message = [{"role": "assistant", "content": "x"}]
        return Rollout(task, task["prompt"], message, [turn])


def _stream(env: GatedEnv, **settings: Any) -> tuple[GroupStream, WeightWatcher, TaskStream]:
    config = OrchestratorConfig(batch_size=4, group_size=2, **settings)
    pool = InferencePool(ClientConfig(base_urls=["http://127.0.0.1:9"]), "tiny")
    watcher = WeightWatcher(Path("/nonexistent"), pool)
    tasks = TaskStream(len(env.dataset), seed=0)
    return GroupStream(env, pool, tasks, watcher, config), watcher, tasks


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_groups_run_ahead_at_most_async_level_steps_and_continue_across_batches():
    async def scenario() -> None:
        env = GatedEnv(50)
        groups, watcher, _ = _stream(env, async_level=1, max_inflight=100, max_off_policy_steps=3)
        batch = asyncio.create_task(groups.next_batch(1))
        await _settle()
        # Weights v0: batches 1 and 2 may be generated (2 groups of 2 rollouts each), not batch 3.
        assert len(groups.running) == 4
        env.release.set()
        stats = await batch
        assert len(stats.groups) == 2
        # The groups of batch 2 kept running (and finished) while batch 1 was handed out.
        assert len(groups.finished) + len(groups.running) == 2
        watcher.version = 1
        stats = await groups.next_batch(2)
        # Weights v1: batch 3 is under way, batch 4 waits for v2.
        assert len(stats.groups) == 2 and len(groups.running) == 2
        await groups.close()

    asyncio.run(scenario())


def test_stale_groups_are_discarded_and_pending_tasks_are_exactly_the_unbatched_ones():
    async def scenario() -> None:
        env = GatedEnv(50)
        env.stale_left = 4  # the first two groups report v0
        groups, watcher, tasks = _stream(env, async_level=5, max_inflight=6, max_off_policy_steps=1)
        watcher.version = env.version = 4
        env.release.set()
        stats = await groups.next_batch(5)  # trains on policies >= 4 only
        assert stats.discarded_stale == 4 and len(stats.groups) == 2
        assert all(r.policy_version == 4 for g in stats.groups for r in g.rollouts)
        batched = {g.task_index for g in stats.groups}
        replay = TaskStream(len(env.dataset), seed=0)
        handed_out = {replay.next() for _ in range(tasks.cursor)}
        pending = groups.pending_tasks()
        assert len(pending) == len(set(pending)) == len(handed_out) - len(batched) - len(env.stale_tasks)
        assert set(pending) == handed_out - batched - env.stale_tasks
        await groups.close()

    asyncio.run(scenario())


def test_the_difficulty_filter_drops_and_retires_all_easy_and_all_hard_tasks():
    async def scenario() -> None:
        env = GatedEnv(40)  # a task's reward is its index, for every rollout of its group
        # Only tasks 19-21 are neither too easy nor too hard. With seed 0 the stream hands out 21 first,
        # 20 tenth and 19 much later, and 4 groups run at once: at least 5 groups must finish (and be
        # judged) before the second kept group can start, whatever order they finish in.
        settings = {"difficulty_filter": True, "easy_reward": 22.0, "hard_reward": 18.0}
        groups, _, tasks = _stream(env, async_level=5, max_inflight=8, **settings)
        env.release.set()
        stats = await groups.next_batch(1)
        assert {g.task_index for g in stats.groups} == {20, 21}
        assert len(tasks.retired) >= 5 and stats.dropped_difficulty == 2 * len(tasks.retired)
        assert not tasks.retired & {19, 20, 21}
        # The batch's reward figures cover what was sampled, the dropped groups too.
        assert sorted(stats.sampled_rewards) == sorted(
            float(i) for i in [20, 21, *tasks.retired] for _ in "ab"
        )
        await groups.close()

    asyncio.run(scenario())


def test_truncated_rollouts_get_no_loss_tokens_when_masked():
    task = {"prompt": [{"role": "user", "content": "hi"}], "answer": "x"}
    turns = [ChatTurn({"role": "assistant", "content": "ab"}, [1, 2], [3, 4], [-0.1, -0.2], 0, reason)
             for reason in ("stop", "length")]  # fmt: skip
    rollouts = [Rollout(task, task["prompt"], [], [turn]) for turn in turns]
    group = Group(0, rollouts, [0.5, -0.5], 0.1)
    kept, masked = to_samples([group], 1.0, mask_truncated=True)
    assert kept.loss_mask == [False, False, True, True] and not any(masked.loss_mask)
    assert all(any(s.loss_mask) for s in to_samples([group], 1.0, mask_truncated=False))


class OnePeriodDisagrees(GatedEnv):
    """The rollouts of the last group of every `period` started get rewards 0 and 1; the others agree."""

    def __init__(self, size: int, period: int) -> None:
        super().__init__(size)
        self.period = period
        self.rubric = Rubric([lambda completion: float(completion[-1]["content"])])

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        group, member = divmod(len(self.started), 2)
        rollout = await super().rollout(client, task, sampling)
        disagrees = group % self.period == self.period - 1
        rollout.completion = [{"role": "assistant", "content": str(member if disagrees else 0)}]
        return rollout


def test_without_refill_a_batch_is_the_groups_sampled_for_it_and_trains_on_those_the_filters_keep():
    async def scenario(refill: bool, period: int) -> list[tuple[int, int]]:
        env = OnePeriodDisagrees(50, period)
        settings = {"drop_zero_advantage": True, "refill": refill, "async_level": 5, "max_inflight": 2}
        groups, _, _ = _stream(env, **settings)  # one group at a time, finishing in the order started
        env.release.set()
        batches = [await groups.next_batch(step) for step in (1, 2)]
        await groups.close()
        assert all(s.dropped_zero_advantage == 2 * (s.judged - len(s.groups)) for s in batches)
        return [(s.judged, len(s.groups)) for s in batches]

    # 2 groups a batch (judged, kept): without refill the 2 sampled for it, or more when none passes.
    assert asyncio.run(scenario(refill=False, period=2)) == [(2, 1), (2, 1)]
    assert asyncio.run(scenario(refill=False, period=4)) == [(4, 1), (4, 1)]
    assert asyncio.run(scenario(refill=True, period=2)) == [(4, 2), (4, 2)]


class BrokenEnv(GatedEnv):
    """Every rollout fails, with no tokens (so no policy version), as a broken environment's do."""

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        return Rollout(task, [], error="the environment is down")


def test_failing_groups_late_in_a_run_count_as_errors_and_stop_it_not_as_stale():
    env = BrokenEnv(8)

    async def main() -> None:
        groups, watcher, _ = _stream(env)
        watcher.version = 49  # step 50: a rollout without tokens is "policy 0", far behind
        with pytest.raises(EnvironmentBrokenError, match="the environment is down"):
            await groups.next_batch(50)
        await groups.close()

    asyncio.run(main())
