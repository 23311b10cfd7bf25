"""Config of the verifiers sources (`[orchestrator.env] source = "verifiers"` or "verifiers-legacy",
`asyncrl eval --source verifiers`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from asyncrl.config_loader import BaseConfig

HARNESS = "asyncrl-chat"
"""verifiers' `null` harness run in-process (the top-level package `asyncrl_chat`)."""


class VerifiersConfig(BaseConfig):
    harness: dict[str, Any] = {"id": HARNESS}
    """The agent's harness as verifiers spells it (`{id = "null"}` for verifiers' own, which `uv`
    prepares per rollout and so needs a package index)."""

    runtime: dict[str, Any] = {"type": "subprocess"}
    """Where the harness and the task's tools run, as verifiers spells it (`{type = "docker"}`, ...)."""

    agent: dict[str, Any] = {}
    """More of verifiers' agent config: `max_turns`, `timeout = {rollout = 60}`, token limits."""

    renderer: dict[str, Any] = {"name": "default"}
    """The renderers config that turns messages into the model's token ids (`{name = "default",
    tool_parser = "qwen3"}` for tool calls in a Qwen-style template)."""

    tokenizer: str | None = None
    """The tokenizer the renderer uses: a local HF dir (default: the model's path)."""

    workers: int = Field(1, ge=1)
    """Env-server worker processes; episodes go to the least busy one, and a worker that dies is
    restarted (its episodes count as errors)."""

    episode_timeout_s: float = Field(600.0, gt=0)
    """An episode not finished after this long is cancelled and counts as an error."""

    retries: int = Field(1, ge=0)
    """Times an episode that errs (the environment raised, hung, or left no trainable tokens) is run
    again before its rollout is marked an error; a group with an errored rollout is left out of the
    batch and counted."""

    startup_timeout_s: float = Field(120.0, gt=0)
    """How long a worker may take to start serving (and a 2025 environment to load its datasets)."""

    legacy_python: str | None = None
    """source = "verifiers-legacy": the interpreter that has verifiers 0.3 and the environment's package
    (default: $ASYNCRL_VERIFIERS_LEGACY_PYTHON, else the checkout's .venv-verifiers-legacy, which `make
    verifiers-legacy` installs)."""

    legacy_client: Literal["openai_chat_completions_token", "openai_chat_completions"] = (
        "openai_chat_completions_token"
    )
    """source = "verifiers-legacy": the verifiers client of the model calls. The token client sends a
    multi-turn rollout's later prompts as the earlier turns' tokens plus the new messages', so the rollout
    is one training sequence; the plain one re-renders every prompt (a new sequence wherever the
    re-rendered tokens differ)."""
