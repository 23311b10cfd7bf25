"""The follower reads each new metrics line and sample file once, across restarts."""

from __future__ import annotations

import json

from asyncrl.monitor.follow import RunFollower
from asyncrl.transport.layout import metrics_file, samples_file
from asyncrl.transport.metrics import append_metrics


def _samples(run, step, rewards):
    path = samples_file(run, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"reward": r}) + "\n" for r in rewards))


def test_each_line_and_sample_file_is_read_once_and_a_new_follower_goes_on_where_the_last_stopped(tmp_path):
    append_metrics(tmp_path, "trainer", 1, {"loss": 0.5})
    _samples(tmp_path, 1, [0.1, 0.2])
    follower = RunFollower(tmp_path, samples_every=1)
    news = follower.poll()
    assert [m["loss"] for m in news.metrics] == [0.5] and news.samples == [
        (1, [{"reward": 0.1}, {"reward": 0.2}])
    ]
    assert follower.poll().metrics == [] and follower.poll().samples == []

    append_metrics(tmp_path, "trainer", 2, {"loss": 0.25})
    _samples(tmp_path, 2, [0.3])
    resumed = RunFollower(tmp_path, samples_every=1).poll()
    assert [m["step"] for m in resumed.metrics] == [2] and [s for s, _ in resumed.samples] == [2]


def test_a_line_still_being_written_waits_and_a_cut_line_is_skipped(tmp_path):
    append_metrics(tmp_path, "trainer", 1, {"loss": 0.5})
    with open(metrics_file(tmp_path), "a") as f:
        f.write('{"step": 2, "component": "trai')
    follower = RunFollower(tmp_path, samples_every=1)
    assert [m["step"] for m in follower.poll().metrics] == [1]
    append_metrics(tmp_path, "trainer", 3, {"loss": 0.1})  # starts a new line after the killed writer's
    assert [m["step"] for m in follower.poll().metrics] == [3]


def test_only_every_nth_steps_samples_are_read_and_a_broken_file_is_skipped(tmp_path):
    for step in range(1, 7):
        _samples(tmp_path, step, [step / 10])
    samples_file(tmp_path, 4).write_text("{not json\n")
    news = RunFollower(tmp_path, samples_every=2).poll()
    assert [step for step, _ in news.samples] == [2, 6]
