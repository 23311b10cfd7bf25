"""Opening an environment from where it comes from: asyncrl's own (built-in or a plugin), a verifiers v1
taskset, or a verifiers 2025 (`verifiers.legacy`) environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from asyncrl.envs.environment import Environment
from asyncrl.envs.registry import load_environment
from asyncrl.envs.verifiers.config import VerifiersConfig

EnvSource = Literal["builtin", "verifiers", "verifiers-legacy"]


def open_environment(
    source: EnvSource,
    name: str,
    args: dict[str, Any],
    verifiers: VerifiersConfig,
    model_path: str,
    log_dir: Path,
    split: Literal["train", "eval"],
) -> Environment:
    """The environment `name` of `source`, to enter (`async with env:`) before its rollouts. `split`: which
    dataset of a 2025 verifiers environment its tasks come from (the others have one, set by `args`)."""
    if source == "verifiers-legacy":
        from asyncrl.envs.verifiers.legacy import LegacyEnvironment

        return LegacyEnvironment(name, args, verifiers, log_dir, split)
    if source == "verifiers":
        # verifiers is an extra: only this source imports it.
        from asyncrl.envs.verifiers.taskset import TasksetEnvironment

        return TasksetEnvironment(name, args, verifiers, verifiers.tokenizer or model_path, log_dir)
    return load_environment(name, **args)
