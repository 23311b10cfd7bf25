"""Evals during training: when they run (step 0, each interval as the weights arrive, the final weights),
what their metrics line holds, and what a restarted orchestrator runs again.

The environment here answers without a model, each turn from the policy the "servers" serve (the
watcher's version), which the test sets by hand, so the schedule is fully under control.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from asyncrl.envs.client import ChatTurn, ModelClient
from asyncrl.envs.environment import Environment, Rollout
from asyncrl.envs.rubric import Rubric
from asyncrl.orchestrator.config import ClientConfig, EvalSpec
from asyncrl.orchestrator.evaluation import Eval, Evaluations, eval_steps, evaluate
from asyncrl.orchestrator.pool import InferencePool
from asyncrl.orchestrator.weights import WeightWatcher
from asyncrl.transport.metrics import append_metrics, read_metrics


class ServedEnv(Environment):
    """Task i's rollouts score the i-th entry of `rewards` in turn; a task whose rewards are None raises."""

    def __init__(self, rewards: list[list[float] | None], watcher: WeightWatcher) -> None:
        tasks = [
            {"prompt": [{"role": "user", "content": str(i)}], "answer": str(i)} for i in range(len(rewards))
        ]
        super().__init__(tasks, Rubric([lambda completion: float(completion[-1]["content"])]))
        self.rewards, self.watcher = [None if r is None else list(r) for r in rewards], watcher

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        rewards = self.rewards[int(task["answer"])]
        if rewards is None:
            raise RuntimeError("the sandbox is gone")
        message = {"role": "assistant", "content": str(rewards.pop(0))}
        turn = ChatTurn(message, [1], [2], [-0.1], self.watcher.version, "stop")
        return Rollout(task, task["prompt"], [message], [turn])


def _parts(tmp_path: Path) -> tuple[InferencePool, WeightWatcher]:
    pool = InferencePool(ClientConfig(base_urls=["http://127.0.0.1:9"]), "tiny")  # never asked: see ServedEnv
    return pool, WeightWatcher(tmp_path, pool)


def _evaluations(tmp_path: Path, max_steps: int, interval: int = 2) -> tuple[Evaluations, WeightWatcher]:
    pool, watcher = _parts(tmp_path)
    env = ServedEnv([[1.0] * 100, [0.0] * 100], watcher)
    spec = EvalSpec(name="held-out", interval=interval, num_examples=2)
    return Evaluations([Eval(spec, env)], tmp_path, pool, watcher, max_steps), watcher


async def _settle() -> None:
    await asyncio.sleep(0.3)  # a few polls of the eval task


def test_evals_are_due_at_step_0_at_every_interval_and_after_the_last_step():
    assert eval_steps([EvalSpec(interval=2)], max_steps=5) == [0, 2, 4, 5]
    assert eval_steps([EvalSpec(interval=2), EvalSpec(name="b", interval=3)], max_steps=6) == [0, 2, 3, 4, 6]
    assert eval_steps([], max_steps=6) == []


def test_an_eval_reports_avg_and_pass_at_k_and_scores_the_rollouts_of_a_failing_task_0(tmp_path, caplog):
    pool, watcher = _parts(tmp_path)
    watcher.version = 3
    env = ServedEnv([[1.0, 1.0], [1.0, 0.0], [0.5, 0.0], None, [1.0, 1.0]], watcher)
    spec = EvalSpec(name="held-out", num_examples=4, k=2, sampling={"temperature": 1.0})
    with caplog.at_level(logging.WARNING):
        result = asyncio.run(evaluate(Eval(spec, env), pool))
    figures = result.figures
    assert figures["held-out/avg@2"] == pytest.approx(3.5 / 8)  # the fifth task is not among the first 4
    assert figures["held-out/pass@1"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert figures["held-out/pass@2"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert figures["held-out/errors"] == 2 and figures["held-out/reward_std"] > 0
    assert figures["held-out/seconds"] >= 0 and result.policy_version == 3
    assert "2 of 8 rollouts failed" in caplog.text and "the sandbox is gone" in caplog.text


def test_evals_run_on_the_first_policy_at_each_interval_as_weights_arrive_and_on_the_final_weights(tmp_path):
    async def scenario() -> None:
        evaluations, watcher = _evaluations(tmp_path, max_steps=5)
        async with evaluations:
            await _settle()
            assert [row["step"] for row in read_metrics(tmp_path, "eval")] == [0]
            for version in (1, 2, 3):
                watcher.version = version
                await _settle()
            assert [row["step"] for row in read_metrics(tmp_path, "eval")] == [0, 2]
            watcher.version = 4
            await _settle()
            final = asyncio.create_task(evaluations.finish(timeout_s=30))
            await _settle()
            assert not final.done(), "the final eval waits for the final weights"
            watcher.version = 5
            await final

    asyncio.run(scenario())
    rows = read_metrics(tmp_path, "eval")
    assert [(row["step"], row["policy_version"]) for row in rows] == [(0, 0), (2, 2), (4, 4), (5, 5)]
    assert all(row["held-out/avg@1"] == 0.5 and row["held-out/pass@1"] == 0.5 for row in rows)


def test_an_eval_the_policy_has_moved_past_is_skipped_but_never_the_final_one(tmp_path, caplog):
    async def scenario() -> None:
        evaluations, watcher = _evaluations(tmp_path, max_steps=5)
        async with evaluations:
            await _settle()
            watcher.version = 5  # the weights of steps 2 and 4 never served
            await evaluations.finish(timeout_s=30)

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert [row["step"] for row in read_metrics(tmp_path, "eval")] == [0, 5]
    assert "eval of step 2 skipped" in caplog.text and "eval of step 4 skipped" in caplog.text


def test_a_restarted_orchestrator_runs_only_the_evals_metrics_lack_the_final_one_included(tmp_path):
    for step in (0, 2):
        append_metrics(tmp_path, "eval", step, {"held-out/avg@1": 0.5, "policy_version": step})
    evaluations, watcher = _evaluations(tmp_path, max_steps=4)
    assert evaluations.steps == [4]

    async def scenario() -> None:
        async with evaluations:
            watcher.version = 4  # a restart at the final step: only the final eval is left to run
            await evaluations.finish(timeout_s=30)

    asyncio.run(scenario())
    assert [row["step"] for row in read_metrics(tmp_path, "eval")] == [0, 2, 4]
    assert _evaluations(tmp_path, max_steps=4)[0].steps == []


def test_the_final_eval_is_given_up_and_logged_when_the_final_weights_never_come(tmp_path, caplog):
    async def scenario() -> None:
        evaluations, _ = _evaluations(tmp_path, max_steps=4)
        async with evaluations:
            await evaluations.finish(timeout_s=0.5)

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert "no final eval: waited" in caplog.text and "weights v4 (the final eval)" in caplog.text
    assert [row["step"] for row in read_metrics(tmp_path, "eval")] == [0]
