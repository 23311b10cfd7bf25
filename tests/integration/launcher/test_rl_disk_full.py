"""A run whose disk fills up stops with an error naming the path, leaves nothing half-written where the
other processes read, and resumes once there is space again."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from asyncrl.inference.server_process import free_port
from asyncrl.transport.batches import load_batch
from asyncrl.transport.layout import DiskFullError
from asyncrl.transport.metrics import read_metrics
from tests.integration.launcher.test_rl import SMALL


def _fill(disk, name: str) -> None:
    """Take every free byte of `disk`."""
    with open(disk / name, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 2**20)
                f.flush()
        except OSError:
            pass


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_stops_the_run_naming_the_path_and_it_resumes_once_space_is_back(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(disk)], check=True)
    try:
        run = disk / "run"
        command = [sys.executable, "-m", "asyncrl.cli", "rl", "--inference.port", str(free_port()), *SMALL,
                   "--output-dir", str(run), "--max-steps", "12", "--trainer.checkpoint.interval", "2",
                   "--trainer.retention.rollouts", "all", "--launcher.restarts", "1",
                   "--launcher.restart-backoff-s", "0.5"]  # fmt: skip
        launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not [m for m in read_metrics(run, "trainer") if m["step"] >= 3]:
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
            time.sleep(0.1)
        _fill(disk, "filler")
        _, stderr = launcher.communicate(timeout=300)
        assert launcher.returncode == DiskFullError.exit_code
        assert "restarting it" not in stderr  # a restart would only meet the same full disk
        assert "no space left on the device of " + str(run) in stderr, stderr[-3000:]

        # Whatever the trainer and the server can see is whole.
        for step_dir in (run / "weights").glob("step_*"):
            if (step_dir / "STABLE").exists():
                assert load_file(str(step_dir / "model.safetensors"))
        batches = sorted((run / "rollouts").glob("step_*"))
        assert batches
        for batch in batches:
            assert len(load_batch(batch).sample_lengths) > 0

        (disk / "filler").unlink()
        resumed = subprocess.run([*command, "--resume", "true"], capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert [m["step"] for m in read_metrics(run, "trainer")] == list(range(1, 13))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
