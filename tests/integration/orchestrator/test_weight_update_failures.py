"""A weight update an inference server refuses is retried, logged with the server's message, and after the
retries stops the orchestrator with that message: never a silent wait for weights that cannot load."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from asyncrl.transport.layout import STABLE, weights_dir


@pytest.mark.slow
def test_weights_a_server_refuses_stop_the_orchestrator_within_a_minute_with_its_message(
    start_server, tiny_dir, tmp_path
):
    server = start_server("tiny")
    # The trainer's first publish, corrupt: a truncated model.safetensors behind a STABLE marker.
    published = weights_dir(tmp_path, 1)
    shutil.copytree(tiny_dir, published)
    weights = published / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (published / STABLE).touch()
    command = [sys.executable, "-m", "asyncrl.cli", "orchestrator", "--output-dir", str(tmp_path),
               "--max-steps", "20", "--orchestrator.client.base-urls", f'["{server.url}"]',
               "--orchestrator.batch-size", "8", "--orchestrator.group-size", "4",
               "--orchestrator.sampling.max-tokens", "8"]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert result.returncode != 0
    assert seconds < 60, f"took {seconds:.0f}s to stop"
    last_line = result.stderr.strip().splitlines()[-1]
    # The inference server's own words about the weights it could not load:
    assert "weights v1" in last_line and "model.safetensors" in last_line, result.stderr[-2000:]
    assert "the old weights keep serving" in last_line and "tried 5 times" in last_line
    assert "Traceback" not in result.stderr
