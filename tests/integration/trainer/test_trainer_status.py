"""A trainer with no batch to read says so in status/trainer.json, where the launcher looks."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from asyncrl.transport.layout import status_file


def test_a_trainer_waiting_for_its_first_batch_says_so_in_its_status_file(tmp_path):
    command = [sys.executable, "-m", "asyncrl.cli", "trainer", "--output-dir", str(tmp_path),
               "--trainer.num-threads", "1"]  # fmt: skip
    trainer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        path = status_file(tmp_path, "trainer")
        while not path.exists():
            assert trainer.poll() is None and time.monotonic() < deadline, "no status file"
            time.sleep(0.1)
        assert json.loads(path.read_text())["waiting_for"] == "the step 1 batch"
    finally:
        trainer.kill()
        trainer.wait()
