"""What the viewer reads from a run dir, and what it says about what it could not read."""

from __future__ import annotations

import json

import pytest

from asyncrl.transport.layout import samples_file
from asyncrl.transport.metrics import append_metrics
from asyncrl.viewer.run_data import NotARunDir, RunData, StepGone, check_run_dir


def _step(run, step, rollouts):
    path = samples_file(run, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rollouts))
    return path


def _rollout(text, reward, version=0):
    return {"prompt": [{"role": "user", "content": f"Reverse: {text}"}],
            "completion": [{"role": "assistant", "content": text[::-1]}],
            "answer": text[::-1], "reward": reward, "advantage": 0.0, "tokens": len(text),
            "policy_version": version}  # fmt: skip


def test_a_dir_without_config_or_metrics_is_not_a_run_dir_and_the_message_says_what_to_give(tmp_path):
    with pytest.raises(NotARunDir, match="is not a run dir .* output_dir of an `asyncrl rl` run"):
        check_run_dir(tmp_path)
    with pytest.raises(NotARunDir, match="is not a directory"):
        check_run_dir(tmp_path / "missing")
    (tmp_path / "config.toml").write_text("max_steps = 3\n")
    assert check_run_dir(tmp_path) == tmp_path


def test_a_step_shows_each_rollout_with_its_lag_and_a_half_written_line_as_a_problem(tmp_path):
    path = _step(tmp_path, 5, [_rollout("abc", 1.0, version=3), _rollout("xyz", 0.5, version=4)])
    with open(path, "a") as f:
        f.write('{"prompt": [{"role": "us')
    page = RunData(tmp_path).samples(5)
    assert [(r["completion"][0]["content"], r["off_policy_lag"], r["tokens"]) for r in page["rollouts"]] == [
        ("cba", 2, 3),
        ("zyx", 1, 3),
    ]
    assert page["problems"] == ["line 3 of step_5.jsonl is cut short or not JSON (still being written?)"]


def test_a_missing_step_is_step_gone_naming_where_it_was_looked_for(tmp_path):
    with pytest.raises(StepGone, match="step 7 has no rollouts in .*samples"):
        RunData(tmp_path).samples(7)


def test_search_finds_text_across_steps_newest_first_within_the_reward_bounds(tmp_path):
    _step(tmp_path, 1, [_rollout("hello", 0.2), _rollout("world", 0.9)])
    _step(tmp_path, 2, [_rollout("yellow", 1.0), _rollout("mellow", 0.1)])
    data = RunData(tmp_path)
    assert data.sample_steps() == [1, 2]
    found = data.search("ELLO")["rollouts"]
    assert [(r["step"], r["answer"]) for r in found] == [(2, "wolley"), (2, "wollem"), (1, "olleh")]
    assert [r["answer"] for r in data.search("", min_reward=0.5, max_reward=0.95)["rollouts"]] == ["dlrow"]


def test_the_summary_says_finished_running_or_stopped(tmp_path):
    (tmp_path / "config.toml").write_text('max_steps = 2\n[model]\npath = "tiny"\n')
    data = RunData(tmp_path)
    assert data.summary()["state"] == "not started"
    append_metrics(tmp_path, "trainer", 1, {"loss": 1.0})
    assert data.summary()["state"] == "running" and data.summary()["model"] == "tiny"
    append_metrics(tmp_path, "trainer", 2, {"loss": 1.0})
    assert data.summary()["state"] == "finished" and data.summary()["step"] == 2
