"""The env-server pool's start: real worker subprocesses, one of which cannot start."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import pytest

from asyncrl.envs.verifiers.servers import EnvServers, EnvServerStartError

# Serves (writes its address, waits for stdin to close) unless its address file is worker 1's.
WORKER = """
import pathlib, sys
address = pathlib.Path(sys.argv[2])
if address.name.endswith("_1"):
    print("worker 1 cannot start", flush=True)
    sys.exit(3)
pathlib.Path(sys.argv[1]).read_text()
address.write_text("served")
sys.stdin.read()
"""


def test_a_worker_that_cannot_start_stops_the_others_and_leaves_no_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    servers = EnvServers(
        [sys.executable, "-c", WORKER], {"env": "x"}, lambda address: None, 2, tmp_path / "logs", 10.0
    )

    with pytest.raises(EnvServerStartError, match="worker 1 did not start") as failed:
        asyncio.run(servers.start())

    assert "worker 1 cannot start" in str(failed.value)
    assert list(scratch.iterdir()) == [], "the workers' private dir outlived the failed start"
    serving = servers._workers[0].process
    assert serving is not None and serving.returncode is not None, "worker 0 was left running"
