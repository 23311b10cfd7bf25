"""`asyncrl orchestrator`: for each step, wait until the servers' policy is recent enough, run groups of
rollouts until the batch is full, score them into group advantages, and write the batch for the trainer.

New weights are loaded on the servers whenever the trainer publishes them, also while a batch is being
generated. Progress (the step and the position in the task stream) is saved inside each batch dir, so a
restarted orchestrator continues with the next step and the next unseen task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from asyncrl.config import OrchestratorConfig, OrchestratorProcessConfig
from asyncrl.envs.environment import Environment, Rollout
from asyncrl.envs.registry import load_environment
from asyncrl.orchestrator.advantages import group_advantages
from asyncrl.orchestrator.pool import InferencePool
from asyncrl.orchestrator.weights import WeightWatcher
from asyncrl.run_dir import PROGRESS_FILE, Sample, append_metrics, latest_step_dir, load_progress, write_batch

log = logging.getLogger("asyncrl.orchestrator")


class TaskStream:
    """Tasks in a seeded order, reshuffled every epoch; `cursor` counts tasks handed out so far."""

    def __init__(self, size: int, seed: int, cursor: int = 0) -> None:
        self.size, self.seed, self.cursor = size, seed, cursor

    def next(self) -> int:
        epoch, position = divmod(self.cursor, self.size)
        order = list(range(self.size))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        self.cursor += 1
        return order[position]


@dataclass
class Group:
    rollouts: list[Rollout]
    advantages: list[float]
    seconds: float


@dataclass
class BatchStats:
    discarded_stale: int = 0
    dropped_zero_advantage: int = 0
    rollout_seconds: float = 0.0
    groups: list[Group] = field(default_factory=list)


async def run_group(
    env: Environment, pool: InferencePool, task: dict[str, Any], config: OrchestratorConfig
) -> Group:
    start = time.perf_counter()
    sampling = config.sampling.model_dump()
    rollouts = await asyncio.gather(
        *(pool.run(lambda client: env.run(client, task, sampling)) for _ in range(config.group_size))
    )
    advantages = group_advantages([r.reward for r in rollouts], config.normalize_advantages)
    return Group(list(rollouts), advantages, time.perf_counter() - start)


async def generate_batch(
    env: Environment, pool: InferencePool, tasks: TaskStream, step: int, config: OrchestratorConfig
) -> BatchStats:
    """Run groups, at most max_inflight rollouts at once, until batch_size rollouts are accepted. A group
    with a rollout from a policy older than step - max_off_policy_steps is discarded (and counted)."""
    needed = config.batch_size // config.group_size
    slots = max(1, config.max_inflight // config.group_size)
    stats = BatchStats()
    running: set[asyncio.Task] = set()
    oldest_allowed = step - config.max_off_policy_steps
    try:
        while len(stats.groups) < needed:
            while len(running) < min(slots, needed - len(stats.groups)):
                task = env.dataset[tasks.next()]
                running.add(asyncio.create_task(run_group(env, pool, task, config)))
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                group = finished.result()
                stats.rollout_seconds += group.seconds * config.group_size
                if min(r.policy_version for r in group.rollouts) < oldest_allowed:
                    stats.discarded_stale += len(group.rollouts)
                elif config.drop_zero_advantage and not any(group.advantages):
                    stats.dropped_zero_advantage += len(group.rollouts)
                elif len(stats.groups) < needed:
                    stats.groups.append(group)
    finally:
        for leftover in running:
            leftover.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return stats


def to_samples(groups: list[Group], temperature: float) -> list[Sample]:
    samples = []
    for group in groups:
        for rollout, advantage in zip(group.rollouts, group.advantages, strict=True):
            ids, mask, logprobs = rollout.token_sample()
            samples.append(
                Sample(ids, mask, [advantage] * len(ids), logprobs, rollout.policy_version, temperature)
            )
    return samples


def write_readable_samples(run_dir: Path, step: int, groups: list[Group], count: int) -> None:
    rollouts = [(r, a) for g in groups for r, a in zip(g.rollouts, g.advantages, strict=True)][:count]
    path = run_dir / "samples" / f"step_{step}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for rollout, advantage in rollouts:
            record = {
                "prompt": rollout.prompt,
                "completion": rollout.completion,
                "answer": rollout.task.get("answer"),
                "reward": rollout.reward,
                "advantage": advantage,
                "policy_version": rollout.policy_version,
            }
            f.write(json.dumps(record) + "\n")


def batch_figures(
    stats: BatchStats, samples: list[Sample], step: int, seconds: float, wait_s: float
) -> dict[str, float]:
    rollouts = [r for g in stats.groups for r in g.rollouts]
    rewards = [r.reward for r in rollouts]
    completion_tokens = sum(len(t.token_ids) for r in rollouts for t in r.turns)
    return {
        "reward_mean": statistics.fmean(rewards),
        "reward_std": statistics.pstdev(rewards),
        "off_policy_max": max(step - r.policy_version for r in rollouts),
        "seq_len_mean": statistics.fmean(len(s.input_ids) for s in samples),
        "rollouts_per_s": len(rollouts) / seconds,
        "tokens_per_s": completion_tokens / seconds,
        "inflight_mean": stats.rollout_seconds / seconds,
        "discarded_stale": stats.discarded_stale,
        "dropped_zero_advantage": stats.dropped_zero_advantage,
        "weights_wait_s": wait_s,
    }


async def orchestrate(config: OrchestratorProcessConfig) -> None:
    cfg, run_dir = config.orchestrator, config.output_dir
    env = load_environment(cfg.env.name, **cfg.env.args)
    last = latest_step_dir(run_dir / "rollouts", lambda d: (d / PROGRESS_FILE).exists())
    progress = load_progress(last[1]) if last else {"step": 0, "cursor": 0}
    tasks = TaskStream(len(env.dataset), config.seed, progress["cursor"])
    async with InferencePool(cfg.client, config.model.path) as pool:
        watcher = WeightWatcher(run_dir, pool)
        refresher = asyncio.create_task(watcher.keep_fresh())
        bar = tqdm(total=config.max_steps, initial=progress["step"], desc="orchestrator")
        try:
            for step in range(progress["step"] + 1, config.max_steps + 1):
                # async_level: batch N may start once the servers serve weights N - 1 - async_level.
                wait_s = await watcher.wait_for(
                    step - 1 - cfg.async_level, cfg.weights_timeout_s, f"step {step}"
                )
                start = time.perf_counter()
                stats = await generate_batch(env, pool, tasks, step, cfg)
                samples = to_samples(stats.groups, cfg.sampling.temperature)
                write_batch(run_dir, step, samples, progress={"step": step, "cursor": tasks.cursor})
                figures = batch_figures(stats, samples, step, time.perf_counter() - start, wait_s)
                write_readable_samples(run_dir, step, stats.groups, cfg.samples_per_step)
                figures.update(policy_version=watcher.version, weight_update_s=watcher.last_update_s)
                append_metrics(run_dir, "orchestrator", step, figures)
                bar.update(1)
                bar.set_postfix(reward=f"{figures['reward_mean']:.3f}", lag=int(figures["off_policy_max"]))
        finally:
            bar.close()
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)


def run_orchestrator(config: OrchestratorProcessConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns everything else
    asyncio.run(orchestrate(config))
