"""Built-in models by name: recipes that write a model dir into the cache on first use.

`tiny` is the untrained tiny model (asyncrl.models builds it); `tiny-reverse-text` is tiny after the
project's own SFT warm-up on reverse-text, the default RL job's start. A recipe may train, so it sits above
the processes: the CLI and the launcher resolve names here once, before any process starts, and every
process below only ever sees model directories.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from asyncrl.config import ModelConfig
from asyncrl.config_loader import BaseConfig
from asyncrl.models import TINY_MODEL_NAME, cached_model_dir, tiny_model_dir

WARM_MODEL_NAME = "tiny-reverse-text"
# The cache dir name: bump the suffix whenever the warm-up's recipe changes, so stale caches are never reused.
WARM_MODEL_VERSION = "tiny-reverse-text-v1"

C = TypeVar("C", bound=BaseConfig)


def warm_model_dir() -> Path:
    """The tiny model after the SFT warm-up on reverse-text, built on first use (about half a minute on one
    core) and cached."""
    from asyncrl.trainer.warm_start import warm_up_on_reverse_text  # only a cache miss pays for the trainer

    return cached_model_dir(WARM_MODEL_VERSION, lambda out: warm_up_on_reverse_text(tiny_model_dir(), out))


RECIPES: dict[str, Callable[[], Path]] = {TINY_MODEL_NAME: tiny_model_dir, WARM_MODEL_NAME: warm_model_dir}
"""Each built-in name and the function that returns its dir, building it when the cache lacks it."""


def resolve_model_name(path: str) -> str:
    """The dir of the built-in model `path` names (built when missing); any other path unchanged."""
    recipe = RECIPES.get(path)
    return str(recipe()) if recipe else path


def resolve_builtin_models(config: C) -> C:
    """`config` with its model's built-in name replaced by the model's dir; requests and servers keep
    calling the model by that name (`model.name`)."""
    model = getattr(config, "model", None)
    if not isinstance(model, ModelConfig) or model.path not in RECIPES:
        return config
    resolved = model.model_copy(update={"path": resolve_model_name(model.path), "name": model.served_name})
    return config.model_copy(update={"model": resolved})
