"""Which environments exist: the built-ins plus plugins registered under the entry-point group
`asyncrl.environments`, each pointing at a `load_environment(**kwargs)`."""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any

from asyncrl.envs.environment import Environment
from asyncrl.errors import UserError

ENTRY_POINT_GROUP = "asyncrl.environments"
BUILT_IN = {
    "reverse-text": "asyncrl.envs.reverse_text:load_environment",
    "arithmetic": "asyncrl.envs.arithmetic:load_environment",
    "calculator": "asyncrl.envs.calculator:load_environment",
    "code": "asyncrl.envs.code_env:load_environment",
}


class EnvironmentNotFoundError(UserError):
    """No environment of that name; the message lists the ones that exist."""


class EnvironmentArgsError(UserError):
    """The arguments do not fit the environment's `load_environment`."""


def available() -> dict[str, str]:
    """Environment name -> `module:function` of its loader, built-ins first."""
    found = dict(BUILT_IN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def loader(name: str) -> Any:
    known = available()
    if name not in known:
        raise EnvironmentNotFoundError(f"no environment {name!r}; installed: {', '.join(sorted(known))}")
    module, _, attr = known[name].partition(":")
    return getattr(importlib.import_module(module), attr or "load_environment")


def load_environment(name: str, **kwargs: Any) -> Environment:
    load = loader(name)
    try:
        inspect.signature(load).bind(**kwargs)
    except TypeError as e:
        raise EnvironmentArgsError(f"{name}: {e}; it takes {_arguments(load) or 'no arguments'}") from None
    try:
        return load(**kwargs)
    except (TypeError, ValueError) as e:
        raise EnvironmentArgsError(f"{name}: {e}") from None


def _arguments(load: Any) -> str:
    return ", ".join(
        f"{p.name}={p.default!r}" if p.default is not inspect.Parameter.empty else p.name
        for p in inspect.signature(load).parameters.values()
    )


def describe(name: str) -> dict[str, Any]:
    """What `asyncrl env info` prints: description, arguments, dataset size, rubric."""
    load = loader(name)
    env = load()
    rubric = ", ".join(
        f"{f.__name__} x {w:g}" for f, w in zip(env.rubric.funcs, env.rubric.weights, strict=True)
    )
    return {
        "name": name,
        "description": env.description or (load.__doc__ or "").strip(),
        "arguments": _arguments(load),
        "dataset_size": len(env.dataset),
        "rubric": rubric,
        "parser": type(env.parser).__name__,
        "loader": available()[name],
    }
