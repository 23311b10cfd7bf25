"""An execution request as the worker takes it, checked against what the sandbox allows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from asyncrl.sandbox.config import SandboxConfig, SandboxLimits
from asyncrl.sandbox.errors import SandboxRequestError
from asyncrl.sandbox.protocol import ExecuteRequest


def worker_request(config: SandboxConfig, request: ExecuteRequest) -> dict[str, Any]:
    """What the worker runs for `request`, or SandboxRequestError saying what exceeds the sandbox."""
    payload = len(request.code or "") + len(request.stdin or "") + sum(map(len, request.files.values()))
    if payload > config.scratch_mb << 20:
        raise SandboxRequestError(
            f"the program, its stdin and its files add up to {payload} characters; they must fit in the "
            f"sandbox's scratch space of {config.scratch_mb} MiB (sandbox.scratch_mb)"
        )
    timeout = config.timeout_s if request.timeout is None else request.timeout
    if not 0 < timeout <= config.max_timeout_s:
        raise SandboxRequestError(
            f"timeout must be in (0, {config.max_timeout_s:g}] seconds, got {timeout:g}"
        )
    return {
        "code": request.code,
        "command": request.command,
        "stdin": request.stdin or "",
        "files": checked_files(request.files),
        "timeout": timeout,
        "limits": checked_limits(config.limits, request.limits).model_dump(),
    }


def checked_limits(allowed: SandboxLimits, asked: Mapping[str, int] | None) -> SandboxLimits:
    """The sandbox's limits with the `asked` fields replaced, if none of them exceeds the sandbox's."""
    if asked is None:
        return allowed
    try:
        limits = SandboxLimits.model_validate({**allowed.model_dump(), **asked})
    except ValidationError as e:
        first = e.errors()[0]
        raise SandboxRequestError(f"limits.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    over = [
        f"{name}={getattr(limits, name)} (allowed: {getattr(allowed, name)})"
        for name in SandboxLimits.model_fields
        if getattr(limits, name) > getattr(allowed, name)
    ]
    if over:
        raise SandboxRequestError(
            f"limits may only be tightened; these exceed the sandbox's: {', '.join(over)}"
        )
    return limits


def checked_files(files: Mapping[str, str]) -> dict[str, str]:
    for path in files:
        parts = PurePosixPath(path).parts
        if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
            raise SandboxRequestError(
                f"file path {path!r} must be relative and stay inside the scratch directory "
                "(e.g. 'tests/test_x.py')"
            )
    return dict(files)
