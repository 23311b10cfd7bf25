"""What is particular to the vLLM backend: vLLM's own errors reach the user, and a server whose vLLM dies
goes down with it instead of answering 503 forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.slow
def test_a_vllm_that_cannot_start_shows_its_own_error():
    command = [sys.executable, "-m", "asyncrl.cli", "inference", "--model.path", "tiny",
               "--inference.backend", "vllm", "--inference.vllm.no-such-engine-arg", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "vLLM exited during start-up" in result.stderr
    assert "unrecognized arguments: --no-such-engine-arg" in result.stderr, result.stderr[-2000:]


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


@pytest.mark.slow
def test_a_server_whose_vllm_dies_stops_with_vllms_output(start_server):
    server = start_server("tiny", "vllm")
    (vllm,) = _children(server.process.pid)
    os.killpg(vllm, signal.SIGKILL)  # vLLM and its engine processes, as an OOM kill would
    deadline = time.monotonic() + 60
    while server.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.process.returncode == 1, "the server outlived its vLLM"
    log = server.log_path.read_text()
    assert "vLLM stopped while serving (exit code -9)" in log
