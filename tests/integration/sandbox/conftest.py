"""One sandbox service for the hostile programs: a single warm sandbox, so consecutive executions are
served by the same worker and anything one of them leaves behind would be found by the next."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from asyncrl.sandbox.config import SandboxConfig, SandboxLimits
from tests.integration.sandbox.service import ServiceThread

SECRET = "hunter2-do-not-leak"
LIMITS = SandboxLimits(cpu_s=5, memory_mb=256, max_processes=32, max_output_bytes=64 << 10)


@pytest.fixture(scope="session")
def service() -> Iterator[ServiceThread]:
    # A secret in the host process's environment, for the programs that go looking for it.
    os.environ["ASYNCRL_TEST_SECRET"] = SECRET
    config = SandboxConfig(pool_size=1, timeout_s=5, max_timeout_s=30, limits=LIMITS)
    try:
        with ServiceThread(config) as running:
            yield running
    finally:
        del os.environ["ASYNCRL_TEST_SECRET"]
