"""`asyncrl orchestrator`: rollouts from an environment, scored into group advantages, written as one
training batch per step.

Groups of rollouts run continuously (see groups.py), at most `async_level` steps ahead of the weights
the servers serve; new weights are loaded on the servers as soon as the trainer publishes them. Progress
(the step, the position in the task stream, the tasks in flight) is saved inside each batch dir, so a
restarted orchestrator continues with the next step and runs again exactly the tasks no batch holds.
Evals during training run beside the groups, on the same servers (see evaluation.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from asyncrl.envs.sources import open_environment
from asyncrl.inference.config import API_KEY_ENV
from asyncrl.orchestrator.config import OrchestratorProcessConfig
from asyncrl.orchestrator.evaluation import Evaluations, open_evals
from asyncrl.orchestrator.groups import BatchStats, Group, GroupStream
from asyncrl.orchestrator.pool import InferencePool
from asyncrl.orchestrator.tasks import TaskStream
from asyncrl.orchestrator.verification import RolloutVerifier, write_proofs_file
from asyncrl.orchestrator.weights import WeightWatcher
from asyncrl.progress import progress_bar
from asyncrl.transport.batches import PROGRESS_FILE, Sample, load_progress, write_batch
from asyncrl.transport.layout import latest_step, logs_dir, rollouts_root, samples_file, write_file_atomically
from asyncrl.transport.metrics import append_metrics
from asyncrl.transport.status import StatusFile

log = logging.getLogger("asyncrl.orchestrator")


def to_samples(groups: list[Group], temperature: float, mask_truncated: bool) -> list[Sample]:
    samples = []
    for group in groups:
        for rollout, advantage in zip(group.rollouts, group.advantages, strict=True):
            truncated = mask_truncated and rollout.turns and rollout.turns[-1].finish_reason == "length"
            for ids, mask, logprobs, routed in rollout.token_samples():
                if truncated:
                    mask = [False] * len(mask)
                advantages = [advantage] * len(ids)
                samples.append(
                    Sample(ids, mask, advantages, logprobs, rollout.policy_version, temperature, routed)
                )
    return samples


def write_readable_samples(run_dir: Path, step: int, groups: list[Group], count: int) -> None:
    rollouts = [(g, r, a) for g in groups for r, a in zip(g.rollouts, g.advantages, strict=True)][:count]
    records = [
        {
            "step": step,
            "task_index": group.task_index,
            "prompt": rollout.prompt,
            "completion": rollout.completion,
            "answer": rollout.task.get("answer"),
            "reward": rollout.reward,
            "advantage": advantage,
            "policy_version": rollout.policy_version,
            "tokens": sum(len(turn.token_ids) for turn in rollout.turns),
            "metrics": rollout.metrics,
        }
        for group, rollout, advantage in rollouts
    ]
    write_file_atomically(samples_file(run_dir, step), "".join(json.dumps(r) + "\n" for r in records))


SECONDS = ("prefill_seconds", "decode_seconds", "engine_seconds")
"""The engine counters EngineTime reads."""


class EngineTime:
    """Where the servers' time went between two steps: prefill, decode, and idle (the rest), from the
    counters of their /metrics (backends that do not measure it give no figures)."""

    def __init__(self, pool: InferencePool) -> None:
        self.pool = pool
        self.last: dict[str, float] = {}

    async def figures(self) -> dict[str, float]:
        now = await self.pool.engine_counters()
        spent = {name: now[name] - self.last.get(name, 0.0) for name in SECONDS if name in now}
        self.last = now
        if len(spent) < len(SECONDS) or min(spent.values()) < 0:  # not measured, or a server restarted
            return {}
        prefill, decode = spent["prefill_seconds"], spent["decode_seconds"]
        idle = max(0.0, spent["engine_seconds"] - prefill - decode)
        return {"inference_prefill_s": prefill, "inference_decode_s": decode, "inference_idle_s": idle}


def batch_figures(stats: BatchStats, samples: list[Sample], step: int, seconds: float) -> dict[str, float]:
    rollouts = [r for g in stats.groups for r in g.rollouts]
    rewards = stats.sampled_rewards
    completion_tokens = sum(len(t.token_ids) for r in rollouts for t in r.turns)
    # The environment's own figures (its rubric's or taskset's metrics), as `env_<name>` means.
    names = sorted({name for r in rollouts for name in r.metrics})
    env_metrics = {
        f"env_{n}": statistics.fmean(r.metrics[n] for r in rollouts if n in r.metrics) for n in names
    }
    return env_metrics | {
        "reward_mean": statistics.fmean(rewards),
        "reward_std": statistics.pstdev(rewards),
        "reward_mean_trained": statistics.fmean(r.reward for r in rollouts),
        "rollouts_trained": len(rollouts),
        "off_policy_max": max(step - r.policy_version for r in rollouts),
        "seq_len_mean": statistics.fmean(len(s.input_ids) for s in samples),
        "rollouts_per_s": len(rollouts) / seconds,
        "tokens_per_s": completion_tokens / seconds,
        "inflight_mean": stats.rollout_seconds / seconds,
        "discarded_stale": stats.discarded_stale,
        "dropped_zero_advantage": stats.dropped_zero_advantage,
        "dropped_too_long": stats.dropped_too_long,
        "dropped_difficulty": stats.dropped_difficulty,
        "dropped_errors": stats.dropped_errors,
        "weights_wait_s": stats.weights_wait_s,
        "scoring_s": stats.scoring_s,
    }


async def orchestrate(config: OrchestratorProcessConfig) -> None:
    cfg, run_dir = config.orchestrator, config.output_dir
    spec = cfg.env
    env = open_environment(
        spec.source, spec.name, spec.args, spec.verifiers, str(config.model.path), logs_dir(run_dir), "train"
    )
    evals = open_evals(cfg.eval, str(config.model.path), logs_dir(run_dir))
    last = latest_step(rollouts_root(run_dir), lambda d: (d / PROGRESS_FILE).exists())
    progress = load_progress(last[1]) if last else {"step": 0, "cursor": 0}
    tasks = TaskStream(
        len(env.dataset),
        config.seed,
        progress["cursor"],
        requeued=progress.get("pending"),
        retired=progress.get("retired"),
    )
    pool = InferencePool(cfg.client, config.model.served_name)
    status = StatusFile(run_dir, "orchestrator")
    watcher = WeightWatcher(
        run_dir, pool, sources=cfg.weights, attempts=cfg.weights_update_attempts, status=status
    )
    evaluations = Evaluations(evals, run_dir, pool, watcher, config.max_steps)
    if cfg.client.api_key:  # verifiers' env-server workers, started with `env`, read it from the environment
        os.environ[API_KEY_ENV] = cfg.client.api_key
    async with env, pool, watcher, evaluations:
        groups = GroupStream(env, pool, tasks, watcher, cfg)
        verifier = (
            RolloutVerifier(run_dir, config.model.path, cfg.verify, cfg.sampling, config.seed)
            if cfg.verify.fraction
            else None
        )
        bar = progress_bar(config.max_steps, "orchestrator", progress["step"], "step")
        engine_time = EngineTime(pool)
        await engine_time.figures()
        started = time.perf_counter()
        write_s = 0.0
        try:
            for step in range(progress["step"] + 1, config.max_steps + 1):
                stats = await watcher.guard(groups.next_batch(step))
                if verifier is not None:
                    stats.groups, checks = await asyncio.to_thread(verifier.filter, stats.groups)
                gathered = time.perf_counter()
                samples = to_samples(stats.groups, cfg.sampling.temperature, cfg.mask_truncated)
                now = time.perf_counter()
                figures = batch_figures(stats, samples, step, now - started)
                started = now
                figures.update(policy_version=watcher.version, weight_update_s=watcher.last_update_s,
                               packing_s=now - gathered, write_s=write_s)  # fmt: skip
                figures.update(await engine_time.figures())
                if verifier is not None:
                    figures.update({f"verify_{k}": v for k, v in asdict(checks).items()})
                # Metrics first: a crash before the batch lands redoes the step, whose new line replaces
                # this one; the other order would leave a trained step without its line.
                append_metrics(run_dir, "orchestrator", step, figures)
                write_readable_samples(run_dir, step, stats.groups, cfg.samples_per_step)
                if cfg.verify.rollouts_file:
                    write_proofs_file(run_dir, step, stats.groups, cfg.sampling)
                saved = {"step": step, "cursor": tasks.cursor, "pending": groups.pending_tasks(),
                         "retired": sorted(tasks.retired)}  # fmt: skip
                write_batch(run_dir, step, samples, progress=saved)
                write_s = time.perf_counter() - now  # goes into the next step's line, written before it
                bar.update(1)
                bar.set_postfix(reward=f"{figures['reward_mean']:.3f}", lag=int(figures["off_policy_max"]))
        finally:
            bar.close()
            await groups.close()
        await watcher.guard(evaluations.finish(cfg.weights_timeout_s))


def run_orchestrator(config: OrchestratorProcessConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns everything else
    asyncio.run(orchestrate(config))
