"""Evals during training (`[[orchestrator.eval]]`): the first `num_examples` tasks of an environment, `k`
rollouts each, on the policy the servers serve, at step 0 (the starting policy), whenever they serve the
weights of a multiple of `interval`, and on the final weights.

One background task runs them beside group generation, on the same servers (each eval at most
`max_concurrent` rollouts at once): no batch waits for an eval. The evals due at one step run together and
write one metrics.jsonl line of component "eval", steps in increasing order. An eval the policy has
already moved past (the servers serve the next eval step's weights) is skipped, so slow evals never queue
up behind training; the final one never is. A restarted orchestrator goes on after the last eval line.

The figures of an eval named N with k rollouts per task: `N/avg@k` (the mean reward), `N/pass@1` ..
`N/pass@k`, `N/reward_std`, `N/errors` (failed rollouts, scored 0) and `N/seconds`; each line also has
`policy_version`, the oldest policy behind one of its rollouts (weights may change during an eval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncrl.envs.environment import Environment, Rollout
from asyncrl.envs.scoring import pass_rates
from asyncrl.envs.sources import open_environment
from asyncrl.orchestrator.config import EvalSpec
from asyncrl.orchestrator.pool import AllServersDownError, InferencePool
from asyncrl.orchestrator.weights import WeightWatcher
from asyncrl.transport.layout import WaitTimeout
from asyncrl.transport.metrics import append_metrics, read_metrics

log = logging.getLogger("asyncrl.orchestrator")
POLL_S = 0.1
"""How often a waiting eval looks whether the servers serve its step's weights."""


@dataclass
class Eval:
    """An eval and its opened environment."""

    spec: EvalSpec
    env: Environment


@dataclass
class EvalResult:
    figures: dict[str, float]
    policy_version: int | None
    """The oldest policy behind one of its rollouts (None: every rollout failed)."""


def open_evals(specs: list[EvalSpec], model_path: str, log_dir: Path) -> list[Eval]:
    """Each eval's environment, opened now so that a bad one stops the run before its first step. An
    environment that logs (verifiers' env-server workers) logs under `log_dir/eval-<label>/`, apart from
    the training environment's."""
    return [
        Eval(
            s,
            open_environment(
                s.env.source,
                s.env.name,
                s.env.args,
                s.env.verifiers,
                model_path,
                log_dir / ("eval-" + re.sub(r"[^\w.-]", "_", s.label)),
                "eval",
            ),
        )
        for s in specs
    ]


def is_due(spec: EvalSpec, step: int, max_steps: int) -> bool:
    return step % spec.interval == 0 or step == max_steps


def eval_steps(specs: list[EvalSpec], max_steps: int) -> list[int]:
    """The steps some eval is due at: 0, the multiples of each interval, and the last."""
    return [step for step in range(max_steps + 1) if any(is_due(s, step, max_steps) for s in specs)]


async def evaluate(evaluated: Eval, pool: InferencePool) -> EvalResult:
    """Run one eval: its figures as `<label>/<figure>`. A rollout that fails (its environment raised or
    gave up on it) scores 0 and is counted in `<label>/errors`."""
    spec, env, label = evaluated.spec, evaluated.env, evaluated.spec.label
    start = time.perf_counter()
    sampling = spec.sampling.model_dump()
    gate = asyncio.Semaphore(max(1, spec.max_concurrent // spec.k))

    async def task_rollouts(task: dict[str, Any]) -> list[Rollout]:
        async with gate:
            try:
                return await pool.run(lambda client: env.run_group(client, task, sampling, spec.k))
            except AllServersDownError:  # no eval at all, rather than one of zeros
                raise
            except Exception as e:  # the environment's own failure: this task's rollouts score 0
                return [Rollout(task, [], error=f"{type(e).__name__}: {e}") for _ in range(spec.k)]

    groups = await asyncio.gather(*map(task_rollouts, env.dataset[: spec.num_examples]))
    rewards = [[0.0 if r.error else r.reward for r in group] for group in groups]
    rollouts = [r for group in groups for r in group]
    errors = [r.error for r in rollouts if r.error]
    if errors:
        log.warning("eval %s: %d of %d rollouts failed (scored 0); the first: %s",
                    label, len(errors), len(rollouts), errors[0])  # fmt: skip
    flat = [reward for group in rewards for reward in group]
    figures = {
        f"{label}/avg@{spec.k}": statistics.fmean(flat),
        **{f"{label}/pass@{k}": rate for k, rate in pass_rates(rewards, spec.k, spec.pass_threshold).items()},
        f"{label}/reward_std": statistics.pstdev(flat),
        f"{label}/errors": len(errors),
        f"{label}/seconds": time.perf_counter() - start,
    }
    served = [r.policy_version for r in rollouts if r.turns]
    return EvalResult(figures, min(served) if served else None)


class Evaluations:
    """The evals of a run, as an async context manager that runs them in a task of its own; `finish` waits
    for the final one."""

    def __init__(
        self, evals: list[Eval], run_dir: Path, pool: InferencePool, watcher: WeightWatcher, max_steps: int
    ) -> None:
        self.evals, self.run_dir, self.pool, self.watcher = evals, run_dir, pool, watcher
        self.max_steps = max_steps
        done = max((row["step"] for row in read_metrics(run_dir, "eval")), default=-1)
        self.steps = [s for s in eval_steps([e.spec for e in evals], max_steps) if s > done]
        """The steps whose evals are still to run (those in metrics.jsonl ran before a restart)."""
        self._task: asyncio.Task | None = None
        self._envs = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Evaluations:
        for evaluated in self.evals:
            await self._envs.enter_async_context(evaluated.env)
        if self.steps:
            self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._envs.aclose()

    async def finish(self, timeout_s: float) -> None:
        """Wait until the final eval ran: first for the servers to serve the final weights, at most
        `timeout_s` (past it the final eval is given up, and logged)."""
        if self._task is None:
            return
        try:
            await self.watcher.wait_for(self.max_steps, timeout_s, "the final eval")
        except WaitTimeout as e:
            log.error("no final eval: %s", e)
            return
        await self._task

    async def _run(self) -> None:
        for i, step in enumerate(self.steps):
            while self.watcher.version < step:
                await asyncio.sleep(POLL_S)
            after = self.steps[i + 1] if i + 1 < len(self.steps) else None
            if after is not None and self.watcher.version >= after:
                log.warning("eval of step %d skipped: the servers already serve v%d, the next eval's policy "
                            "(after a restart, or evals slower than their interval: raise it, or lower "
                            "num_examples)", step, self.watcher.version)  # fmt: skip
                continue
            await self._evaluate_at(step)

    async def _evaluate_at(self, step: int) -> None:
        due = [e for e in self.evals if is_due(e.spec, step, self.max_steps)]
        results = await asyncio.gather(*(evaluate(e, self.pool) for e in due), return_exceptions=True)
        figures: dict[str, float] = {}
        versions = []
        for evaluated, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):  # an eval that cannot run must not stop the training
                log.error("eval %s of step %d failed: %r", evaluated.spec.label, step, result)
                continue
            figures.update(result.figures)
            if result.policy_version is not None:
                versions.append(result.policy_version)
        if not figures:
            return
        version = min(versions, default=self.watcher.version)
        append_metrics(self.run_dir, "eval", step, {**figures, "policy_version": version})
        averages = ", ".join(f"{name} {value:.3f}" for name, value in figures.items() if "/avg@" in name)
        log.info("eval of step %d on policy v%d: %s", step, version, averages)
