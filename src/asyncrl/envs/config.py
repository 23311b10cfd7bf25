"""Configs of the `asyncrl env` commands."""

from __future__ import annotations

from pathlib import Path

from asyncrl.config_loader import BaseConfig


class EnvListConfig(BaseConfig):
    """`asyncrl env list`: the environments installed, built-in and plugins."""


class EnvInfoConfig(BaseConfig):
    """`asyncrl env info NAME`: an environment's loader, arguments and description."""

    name: str | None = None
    """The environment (`asyncrl env list`); also the first positional argument."""


class EnvInitConfig(BaseConfig):
    """`asyncrl env init NAME [--path DIR]`: scaffold a new environment package."""

    name: str | None = None
    """The new environment's name (lower-case letters, digits and dashes); also the first positional
    argument."""

    path: Path = Path(".")
    """Directory the package `NAME/` is created in."""
