"""Run `rollouts_per_example` rollouts of the first `num_examples` tasks, write them as they finish, and
summarise: mean reward, each reward function's mean, and pass@k (the unbiased estimator, envs/scoring.py)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from asyncrl.envs.client import ModelClient
from asyncrl.envs.environment import Environment, Rollout
from asyncrl.envs.scoring import pass_rates
from asyncrl.envs.sources import open_environment
from asyncrl.errors import UserError
from asyncrl.evals.config import EvalConfig
from asyncrl.inference.config import API_KEY_ENV
from asyncrl.inference.server_process import InferenceServerProcess
from asyncrl.progress import progress_bar


class EvalOutputExistsError(UserError):
    """The output dir holds an earlier eval's results, which a new eval would replace."""


def rollout_record(example: int, rollout: Rollout) -> dict[str, Any]:
    return {
        "example": example,
        "task": rollout.task,
        "completion": rollout.completion,
        "reward": rollout.reward,
        "metrics": rollout.metrics,
        "tokens": sum(len(t.token_ids) for t in rollout.turns),
        "finish_reason": rollout.turns[-1].finish_reason if rollout.turns else None,
        "error": rollout.error,
    }


def summarize(records: list[dict[str, Any]], rollouts_per_example: int, threshold: float) -> dict[str, Any]:
    by_example: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_example.setdefault(r["example"], []).append(r)
    metric_names = sorted({name for r in records for name in r["metrics"]})
    rewards = [[r["reward"] for r in rs] for rs in by_example.values()]
    return {
        "rollouts": len(records),
        "errors": sum(r["error"] is not None for r in records),
        "examples": len(by_example),
        "reward_mean": sum(r["reward"] for r in records) / max(1, len(records)),
        "metrics": {
            m: sum(r["metrics"].get(m, 0.0) for r in records) / max(1, len(records)) for m in metric_names
        },
        "pass_threshold": threshold,
        "pass_at_k": {str(k): v for k, v in pass_rates(rewards, rollouts_per_example, threshold).items()},
    }


async def run_rollouts(
    env: Environment, client: ModelClient, config: EvalConfig, results: Path
) -> list[dict[str, Any]]:
    """Every rollout, at most `max_concurrent` at once, appended to `results` as soon as it finishes (so a
    run that fails midway keeps what it finished)."""
    jobs = [(i, env.dataset[i]) for i in range(min(config.num_examples, len(env.dataset)))]
    jobs = [job for job in jobs for _ in range(config.rollouts_per_example)]
    sampling = config.sampling.model_dump()
    gate = asyncio.Semaphore(config.max_concurrent)
    records: list[dict[str, Any]] = []
    progress = progress_bar(len(jobs), f"eval {config.env}", unit="rollout")

    async def one(example: int, task: dict[str, Any]) -> None:
        async with gate:
            rollout = await env.run(client, task, sampling)
        record = rollout_record(example, rollout)
        records.append(record)
        with open(results, "a") as f:
            f.write(json.dumps(record) + "\n")
        progress.update(1)
        progress.set_postfix(reward=f"{sum(r['reward'] for r in records) / len(records):.3f}")

    try:
        await asyncio.gather(*(one(i, task) for i, task in jobs))
    finally:
        progress.close()
    return records


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'reward (mean)':<24}{summary['reward_mean']:.4f}"]
    lines += [f"{name:<24}{value:.4f}" for name, value in summary["metrics"].items()]
    lines += [f"{'pass@' + k:<24}{value:.4f}" for k, value in summary["pass_at_k"].items()]
    lines.append(f"{'rollouts':<24}{summary['rollouts']} ({summary['examples']} examples)")
    if summary["errors"]:
        lines.append(f"{'failed rollouts':<24}{summary['errors']} (reward 0; see `error` in results.jsonl)")
    return "\n".join(lines)


async def _evaluate(
    env: Environment, config: EvalConfig, base_url: str, results: Path
) -> list[dict[str, Any]]:
    if config.api_key:  # verifiers' env-server workers, started with `env`, read it from their environment
        os.environ[API_KEY_ENV] = config.api_key
    async with (
        env,
        ModelClient(base_url, config.model.served_name, retries=config.retries, api_key=config.api_key) as c,
    ):
        return await run_rollouts(env, c, config, results)


def run_eval(config: EvalConfig) -> Path:
    """Evaluate and write results.jsonl and summary.json; returns the output dir."""
    out = config.output_dir or Path("runs") / "eval" / f"{config.env}-{time.strftime('%Y%m%d-%H%M%S')}"
    env = open_environment(
        config.source,
        config.env,
        config.env_args,
        config.verifiers,
        str(config.model.path),
        out / "logs",
        "eval",
    )
    earlier = [name for name in ("results.jsonl", "summary.json") if (out / name).exists()]
    if earlier:
        raise EvalOutputExistsError(
            f"{out} holds an earlier eval's {' and '.join(earlier)}: pass another --output-dir, or delete "
            "them to evaluate again"
        )
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    if config.base_url:
        records = asyncio.run(_evaluate(env, config, config.base_url.removesuffix("/v1"), results))
    else:
        with InferenceServerProcess(
            config.model, config.inference, config.seed, out / "server.log"
        ) as server:
            records = asyncio.run(_evaluate(env, config, server.url, results))
    summary = summarize(records, config.rollouts_per_example, config.pass_threshold)
    summary.update(
        env=config.env,
        env_args=config.env_args,
        model=config.model.path,
        sampling=config.sampling.model_dump(),
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    print(f"results: {results}\nsummary: {out / 'summary.json'}")
    return out
