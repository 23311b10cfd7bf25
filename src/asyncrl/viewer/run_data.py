"""What the viewer reads from a run dir: its config, metrics, and the rollouts of each step.

A run dir changes under the viewer: lines are appended, steps land, a step's file may be half-written
(by hand, or a copy still in progress) or deleted (retention, a user). Each read says what it could not
read in `problems`, and never raises on it.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from pathlib import Path
from typing import Any

from asyncrl.errors import UserError
from asyncrl.transport.layout import (
    config_file,
    metrics_file,
    read_config,
    samples_dir,
    samples_file,
    step_number,
)
from asyncrl.transport.metrics import read_metrics

LIVE_S = 60.0
"""A run whose metrics changed this recently is shown as running."""


class NotARunDir(UserError):
    """The path given to `asyncrl view` holds no run."""


class StepGone(UserError):
    """A step's rollouts are not (or no longer) in the run dir."""


def check_run_dir(path: Path | None) -> Path:
    if path is None:
        raise NotARunDir(
            "give the run dir: asyncrl view RUN_DIR (an `asyncrl rl` output_dir, e.g. runs/default)"
        )
    path = Path(path)
    if not path.is_dir():
        raise NotARunDir(f"{path} is not a directory: give the output_dir of an `asyncrl rl` run")
    if not config_file(path).exists() and not metrics_file(path).exists():
        raise NotARunDir(
            f"{path} is not a run dir (it has neither config.toml nor metrics.jsonl): give the output_dir "
            "of an `asyncrl rl` run"
        )
    return path


def rollout_view(step: int, index: int, record: dict[str, Any]) -> dict[str, Any]:
    """One rollout of samples/step_<step>.jsonl as the page shows it."""
    version = record.get("policy_version")
    return {
        "step": step,
        "index": index,
        "prompt": record.get("prompt", []),
        "completion": record.get("completion", []),
        "answer": record.get("answer"),
        "reward": record.get("reward"),
        "advantage": record.get("advantage"),
        "tokens": record.get("tokens"),
        "policy_version": version,
        "off_policy_lag": None if version is None else step - version,
        "metrics": record.get("metrics", {}),
    }


class RunData:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def metrics_tag(self) -> str:
        """Changes whenever metrics.jsonl does (for the page's conditional requests)."""
        try:
            stat = metrics_file(self.run_dir).stat()
        except FileNotFoundError:
            return "none"
        return f"{stat.st_size}-{stat.st_mtime_ns}"

    def summary(self) -> dict[str, Any]:
        problems = []
        try:
            config = read_config(self.run_dir)
        except (OSError, tomllib.TOMLDecodeError) as e:
            config = {}
            problems.append(f"config.toml could not be read: {e}")
        if not self.run_dir.is_dir():
            problems.append(f"{self.run_dir} is gone (deleted while the viewer ran?)")
        trainer = read_metrics(self.run_dir, "trainer") if self.run_dir.is_dir() else []
        try:
            changed = metrics_file(self.run_dir).stat().st_mtime
        except FileNotFoundError:
            changed = None
        step, max_steps = (trainer[-1]["step"] if trainer else 0), config.get("max_steps")
        if max_steps is not None and step >= max_steps:
            state = "finished"
        elif changed is not None and time.time() - changed < LIVE_S:
            state = "running"
        else:
            state = "stopped" if changed is not None else "not started"
        orchestrator = config.get("orchestrator", {})
        return {
            "name": self.run_dir.resolve().name,
            "path": str(self.run_dir),
            "step": step,
            "max_steps": max_steps,
            "state": state,
            "model": config.get("model", {}).get("path"),
            "env": orchestrator.get("env", {}).get("name"),
            "problems": problems,
        }

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.run_dir) if self.run_dir.is_dir() else []

    def sample_steps(self) -> list[int]:
        try:
            names = os.listdir(samples_dir(self.run_dir))
        except FileNotFoundError:
            return []
        return sorted(s for s in (step_number(Path(n), ".jsonl") for n in names) if s is not None)

    def samples(self, step: int) -> dict[str, Any]:
        path = samples_file(self.run_dir, step)
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            raise StepGone(f"step {step} has no rollouts in {samples_dir(self.run_dir)} (deleted, or not "
                           "written yet)") from None  # fmt: skip
        rollouts, problems = [], []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.append(
                    f"line {number} of {path.name} is cut short or not JSON (still being written?)"
                )
                continue
            if isinstance(record, dict):
                rollouts.append(rollout_view(step, len(rollouts), record))
            else:
                problems.append(f"line {number} of {path.name} is not a rollout record")
        return {"step": step, "rollouts": rollouts, "problems": problems}

    def search(
        self,
        text: str = "",
        min_reward: float | None = None,
        max_reward: float | None = None,
        limit: int = 200,
    ) -> dict[str, Any]:
        """Rollouts of every step whose prompt, completion or answer holds `text` (case-insensitive) and
        whose reward lies in [min_reward, max_reward], newest step first."""
        needle, found, problems = text.lower(), [], []
        for step in reversed(self.sample_steps()):
            try:
                page = self.samples(step)
            except StepGone:
                continue
            problems += page["problems"]
            for rollout in page["rollouts"]:
                reward = rollout["reward"]
                if min_reward is not None and (reward is None or reward < min_reward):
                    continue
                if max_reward is not None and (reward is None or reward > max_reward):
                    continue
                if needle and needle not in _text(rollout).lower():
                    continue
                found.append(rollout)
                if len(found) >= limit:
                    return {"rollouts": found, "truncated": True, "problems": problems}
        return {"rollouts": found, "truncated": False, "problems": problems}


def _text(rollout: dict[str, Any]) -> str:
    messages = [*rollout["prompt"], *rollout["completion"]]
    parts = [m.get("content") or "" for m in messages if isinstance(m, dict)]
    parts += [
        json.dumps(m.get("tool_calls")) for m in messages if isinstance(m, dict) and m.get("tool_calls")
    ]
    return "\n".join([*parts, str(rollout["answer"] or "")])
