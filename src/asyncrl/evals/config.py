"""Config of `asyncrl eval`."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from asyncrl.config import ModelConfig, OutputDir, SamplingConfig
from asyncrl.config_loader import BaseConfig
from asyncrl.envs.sources import EnvSource
from asyncrl.envs.verifiers.config import VerifiersConfig
from asyncrl.inference.config import InferenceConfig


class EvalConfig(BaseConfig):
    """`asyncrl eval ENV`: run an environment against a model and report its rewards."""

    env: str = "reverse-text"
    """Environment name (`asyncrl env list`), or a verifiers taskset or environment id with --source; also
    the first positional argument."""

    env_args: dict[str, Any] = {}
    """Keyword arguments of the environment's load_environment (or the taskset's config fields), as JSON:
    --env-args '{"seed": 1}'."""

    source: EnvSource = "builtin"
    """Where the environment comes from: "builtin" (asyncrl's own and plugins), "verifiers" (a v1 taskset)
    or "verifiers-legacy" (an environment of verifiers' 2025 API; its eval dataset)."""

    verifiers: VerifiersConfig = VerifiersConfig()
    """How verifiers episodes run (--source verifiers or verifiers-legacy)."""

    base_url: str | None = None
    """An OpenAI-compatible server (e.g. http://host:8000/v1) whose model `model.path` names; without
    it, the built-in server is started on `model.path`."""

    api_key: str | None = Field(None, exclude=True)  # a secret: never written to a run's files
    """Bearer token for `base_url` (default: $ASYNCRL_API_KEY)."""

    retries: int = Field(5, ge=0)
    """Retries, with exponential backoff from 0.5 s, of a request the model server failed or never got."""

    num_examples: int = Field(20, ge=1)
    """Tasks evaluated (the first ones of the environment's dataset)."""

    rollouts_per_example: int = Field(4, ge=1)
    """Rollouts per task; pass@k is reported for k up to this."""

    max_concurrent: int = Field(32, ge=1)
    """Rollouts in flight at once."""

    pass_threshold: float = 1.0
    """A rollout counts as passing for pass@k when its reward is at least this."""

    output_dir: OutputDir | None = None
    """Where results.jsonl and summary.json go (default: runs/eval/<env>-<time>)."""

    seed: int = 0
    """Seed of the built-in server's sampler."""

    model: ModelConfig = ModelConfig()
    """The model: a path for the built-in server, or the served model's name with base_url."""

    inference: InferenceConfig = InferenceConfig(port=0)
    """The built-in server started when no base_url is given."""

    sampling: SamplingConfig = SamplingConfig()
    """Sampling of every model turn."""
