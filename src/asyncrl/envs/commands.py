"""What the `asyncrl env` commands do once their config is read."""

from __future__ import annotations

from asyncrl.envs.config import EnvInfoConfig, EnvInitConfig, EnvListConfig
from asyncrl.envs.registry import available, describe
from asyncrl.envs.scaffold import scaffold


def list_environments(config: EnvListConfig) -> None:
    for name, target in sorted(available().items()):
        print(f"{name:<24}{target}")


def show_environment(config: EnvInfoConfig) -> None:
    assert config.name is not None  # the command's check
    for key, value in describe(config.name).items():
        print(f"{key:<14}{value}")


def init_environment(config: EnvInitConfig) -> None:
    assert config.name is not None  # the command's check
    root = scaffold(config.name, config.path)
    print(f"created {root}; install it with: pip install -e {root}")
