"""Configs of the sandbox service: the `asyncrl sandbox serve|exec` commands, and the `SandboxConfig` a
code environment runs its own pool with."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from asyncrl.config_loader import BaseConfig


class SandboxLimits(BaseConfig):
    cpu_s: int = Field(10, ge=1)
    """CPU seconds each process of an execution may use (RLIMIT_CPU)."""

    memory_mb: int = Field(512, ge=32)
    """Address space of each process, MiB (RLIMIT_AS); past it allocations fail (Python: MemoryError)."""

    max_processes: int = Field(64, ge=1)
    """Processes and threads an execution may have at once (RLIMIT_NPROC of the sandbox's own uid)."""

    max_file_mb: int = Field(64, ge=0)
    """Largest file an execution may write, MiB (RLIMIT_FSIZE)."""

    max_open_files: int = Field(256, ge=16)
    """Open file descriptors of each process (RLIMIT_NOFILE)."""

    max_output_bytes: int = Field(1 << 20, ge=1024)
    """Bytes kept of stdout and of stderr each; a program that writes more is stopped and flagged."""


class SandboxConfig(BaseConfig):
    pool_size: int = Field(4, ge=1)
    """Warm sandboxes kept running, each ready to fork a fresh child per execution."""

    max_queue: int = Field(256, ge=0)
    """Executions that may wait for a free sandbox; past that, requests are refused (HTTP 429)."""

    timeout_s: float = Field(10.0, gt=0)
    """Wall-clock seconds of an execution that does not ask for its own timeout."""

    max_timeout_s: float = Field(120.0, gt=0)
    """Longest timeout a request may ask for."""

    scratch_mb: int = Field(256, ge=1)
    """Size of each sandbox's writable tmpfs (/tmp, and /dev/shm), MiB; emptied after every execution."""

    python: str = "/usr/bin/python3"
    """The interpreter inside the sandbox; only the host's /usr is mounted (read-only), so one under it."""

    limits: SandboxLimits = SandboxLimits()
    """Resource limits of each execution (a request may tighten them, never loosen them)."""

    @model_validator(mode="after")
    def _timeouts_ordered(self) -> SandboxConfig:
        if self.timeout_s > self.max_timeout_s:
            raise ValueError(f"timeout_s {self.timeout_s} exceeds max_timeout_s {self.max_timeout_s}")
        return self


class SandboxServeConfig(BaseConfig):
    """`asyncrl sandbox serve`: the sandbox HTTP service (warm pool, routes /v1/execute, /v1/run_tests)."""

    host: str = "127.0.0.1"
    """Address to listen on; any but a loopback address requires a token."""

    port: int = Field(8100, ge=0, le=65535)
    """TCP port (0 picks a free one)."""

    token: str | None = None
    """Bearer token clients must send (Authorization: Bearer TOKEN); default: $ASYNCRL_SANDBOX_TOKEN."""

    sandbox: SandboxConfig = SandboxConfig()
    """The warm pool and its limits."""


class SandboxExecConfig(BaseConfig):
    """`asyncrl sandbox exec FILE`: run a Python file in a sandbox; print its output, exit with its code
    (124 on timeout)."""

    file: Path | None = None
    """The Python file to run (also the first positional argument)."""

    stdin: Path | None = None
    """File fed to the program's standard input (`-`: this command's own stdin); default: none."""

    timeout: float | None = Field(None, gt=0)
    """Wall-clock seconds before the program is killed (default: sandbox.timeout_s)."""

    output: Literal["text", "json"] = "text"
    """`text`: the program's stdout and stderr; `json`: the result record (`--json` is short for this)."""

    url: str | None = None
    """A running `asyncrl sandbox serve` (its warm pool); without it, a sandbox is started here."""

    token: str | None = None
    """Bearer token for `url`; default: $ASYNCRL_SANDBOX_TOKEN."""

    sandbox: SandboxConfig = SandboxConfig(pool_size=1)
    """The local sandbox, when no url is given."""
