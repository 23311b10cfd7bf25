"""What the `asyncrl rl` progress bar says when no step lands."""

from __future__ import annotations

import os

from asyncrl.launcher.rl import _stall_reason


def test_the_newest_heartbeat_of_any_child_is_the_stall_reason(tmp_path):
    assert _stall_reason(tmp_path) == "starting up"
    (tmp_path / "trainer.log").write_text(
        "2026-11-24 INFO asyncrl.trainer: still waiting for batch 3 at rollouts/step_3 (30s)\nother\n"
    )
    (tmp_path / "orchestrator.log").write_text(
        "2026-11-24 INFO asyncrl.orchestrator: step 3: waiting for weights v1 from the trainer (60s)\n"
    )
    os.utime(tmp_path / "trainer.log", (1, 1))
    assert _stall_reason(tmp_path) == "orchestrator: step 3: waiting for weights v1 from the trainer (60s)"
