"""metrics.jsonl as the surviving run made it: a process that redoes steps after a crash replaces its
earlier lines for them, events are kept, a line cut short by a kill is skipped; every line says when it
was written."""

from __future__ import annotations

import json
import time

from asyncrl.transport.metrics import append_metrics, read_metrics


def test_a_component_that_redoes_steps_replaces_its_lines_from_there(tmp_path):
    for step in (1, 2, 3, 4, 5):
        append_metrics(tmp_path, "trainer", step, {"loss": float(step)})
        append_metrics(tmp_path, "orchestrator", step, {"reward_mean": 0.1})
    append_metrics(tmp_path, "launcher", 5, {"event": "restart", "process": "trainer"})
    for step in (3, 4, 5, 6):  # resumed from the checkpoint of step 2
        append_metrics(tmp_path, "trainer", step, {"loss": 10.0 + step})
    trainer = read_metrics(tmp_path, "trainer")
    assert [r["step"] for r in trainer] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in trainer] == [1.0, 2.0, 13.0, 14.0, 15.0, 16.0]
    assert [r["step"] for r in read_metrics(tmp_path, "orchestrator")] == [1, 2, 3, 4, 5]
    [event] = read_metrics(tmp_path, "launcher")
    assert (event["step"], event["event"], event["process"]) == (5, "restart", "trainer")
    assert len(read_metrics(tmp_path)) == 12


def test_a_line_cut_short_by_a_kill_is_skipped(tmp_path):
    append_metrics(tmp_path, "trainer", 1, {"loss": 1.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 2, "component": "trainer", "loss": 2.0})[:20])
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]
    append_metrics(tmp_path, "trainer", 2, {"loss": 2.5})  # the next line starts on a line of its own
    assert [r["loss"] for r in read_metrics(tmp_path)] == [1.0, 2.5]


def test_every_line_carries_its_wall_time_and_the_seconds_since_the_first_line(tmp_path):
    before = time.time()
    append_metrics(tmp_path, "launcher", 0, {"event": "start"})
    time.sleep(0.2)
    append_metrics(tmp_path, "trainer", 1, {"loss": 1.0})
    start, line = read_metrics(tmp_path)
    assert before <= start["time"] <= line["time"] <= time.time()
    assert start["elapsed_s"] == 0
    assert line["elapsed_s"] == round(line["time"] - start["time"], 3) >= 0.2
