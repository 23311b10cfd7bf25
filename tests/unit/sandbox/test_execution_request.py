"""Execution requests are checked against the sandbox's own limits before any sandbox sees them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from asyncrl.sandbox import SandboxRequestError
from asyncrl.sandbox.config import SandboxConfig, SandboxLimits
from asyncrl.sandbox.execution import worker_request
from asyncrl.sandbox.protocol import ExecuteRequest, RunTestsRequest

CONFIG = SandboxConfig(timeout_s=5, max_timeout_s=20, scratch_mb=1, limits=SandboxLimits(memory_mb=256))


def _request(**fields) -> dict:
    return worker_request(CONFIG, ExecuteRequest(**{"code": "print(1)", **fields}))


def test_defaults_come_from_the_sandbox_config():
    request = _request()
    assert request["timeout"] == 5 and request["stdin"] == "" and request["files"] == {}
    assert request["limits"] == CONFIG.limits.model_dump()


def test_limits_may_be_tightened_field_by_field():
    request = _request(limits={"memory_mb": 64}, timeout=20)
    assert request["limits"]["memory_mb"] == 64 and request["limits"]["cpu_s"] == CONFIG.limits.cpu_s


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"limits": {"memory_mb": 512}}, r"memory_mb=512 \(allowed: 256\)"),
        ({"limits": {"max_processes": 1000}}, "max_processes=1000"),
        ({"limits": {"memory_mb": 0}}, "limits.memory_mb"),
        ({"limits": {"no_such_limit": 1}}, "limits.no_such_limit"),
        ({"timeout": 21}, r"timeout must be in \(0, 20\]"),
        ({"timeout": 0}, "timeout must be in"),
        ({"files": {"../up.py": ""}}, "must be relative"),
        ({"files": {"a/../../up.py": ""}}, "must be relative"),
        ({"files": {"/abs.py": ""}}, "must be relative"),
        ({"files": {"": ""}}, "must be relative"),
        ({"stdin": "x" * (2 << 20)}, "scratch space of 1 MiB"),
    ],
)
def test_requests_beyond_the_sandbox_are_refused(fields, message):
    with pytest.raises(SandboxRequestError, match=message):
        _request(**fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"code": "x", "command": ["true"]}, "either code"),
        ({}, "either code"),
        ({"command": []}, "command is empty"),
    ],
)
def test_a_request_runs_exactly_one_program(fields, message):
    with pytest.raises(ValidationError, match=message):
        ExecuteRequest(**fields)


def test_a_test_run_needs_cases():
    with pytest.raises(ValidationError, match="at least 1 item"):
        RunTestsRequest(code="x", cases=[])
