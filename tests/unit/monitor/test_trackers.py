"""The trackers, for real: an offline W&B run and TensorBoard event files, read back with their libraries."""

from __future__ import annotations

import json

import pytest

from asyncrl.monitor.config import MonitorConfig
from asyncrl.monitor.service import Monitor
from asyncrl.monitor.trackers import message_text, wandb_mode
from asyncrl.transport.layout import samples_file
from asyncrl.transport.metrics import append_metrics
from tests import wandb_records

pytest.importorskip("wandb")
pytest.importorskip("tensorboard")


def _write_run(run, steps):
    (run / "config.toml").parent.mkdir(parents=True, exist_ok=True)
    (run / "config.toml").write_text("max_steps = 4\n[orchestrator]\nbatch_size = 8\n")
    for step in steps:
        append_metrics(run, "orchestrator", step, {"reward_mean": step / 10, "note": "text is left out"})
        append_metrics(run, "trainer", step, {"loss": 1 / step})
        path = samples_file(run, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"prompt": [{"role": "user", "content": f"Reverse: ab{step}"}],
                  "completion": [{"role": "assistant", "content": f"{step}ba"}],
                  "reward": 1.0, "advantage": 0.5, "policy_version": step - 1}  # fmt: skip
        path.write_text(json.dumps(record) + "\n")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_a_wandb_run_holds_each_components_metrics_at_its_steps_with_times_and_an_adding_samples_table(
    tmp_path, offline
):
    config = MonitorConfig(wandb=True, samples_every=2)
    _write_run(tmp_path, [1, 2])
    with Monitor(tmp_path, config):
        pass
    _write_run(tmp_path, [3, 4])  # the run resumed: same W&B run id, logging on from step 3
    with Monitor(tmp_path, config):
        pass

    runs = wandb_records.offline_runs(tmp_path)
    assert len(runs) == 2 and len({wandb_records.run_id(r) for r in runs}) == 1
    rows = [row for run in runs for row in wandb_records.history(run)]
    trainer = [r for r in rows if "trainer/loss" in r]
    assert [r["trainer/step"] for r in trainer] == [1, 2, 3, 4]
    assert [r["trainer/loss"] for r in trainer] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4])
    assert all(r["trainer/time"] > 1.7e9 and r["trainer/elapsed_s"] >= 0 for r in trainer)
    assert [r["orchestrator/reward_mean"] for r in rows if "orchestrator/step" in r] == [0.1, 0.2, 0.3, 0.4]
    assert not any("orchestrator/note" in r for r in rows)
    assert wandb_records.config(runs[0])["orchestrator"] == {"batch_size": 8}
    tables = [row for run in runs for row in wandb_records.table_rows(run, "samples")]
    assert [(row[0], row[2], row[-1]) for row in tables] == [
        (2, "assistant: 2ba", 1),
        (4, "assistant: 4ba", 1),
    ]


def test_tensorboard_event_files_hold_the_scalars_at_their_steps_and_the_sample_tables(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _write_run(tmp_path, [1, 2, 3])
    with Monitor(tmp_path, MonitorConfig(tensorboard=True, samples_every=1)):
        pass
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, round(e.value, 3)) for e in events.Scalars("trainer/loss")] == [
        (1, 1),
        (2, 0.5),
        (3, 0.333),
    ]
    assert events.Scalars("orchestrator/reward_mean")[0].wall_time > 1.7e9
    tables = [e.tensor_proto.string_val[0].decode() for e in events.Tensors("samples/text_summary")]
    assert len(tables) == 3 and "assistant: 3ba" in tables[2] and "| 3 | user: Reverse: ab3" in tables[2]


def test_wandb_is_offline_without_an_api_key_and_follows_wandb_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_a_failing_tracker_is_dropped_and_the_others_go_on(tmp_path, caplog):
    _write_run(tmp_path, [1])
    monitor = Monitor(tmp_path, MonitorConfig(tensorboard=True))
    (tensorboard,) = monitor.trackers
    tensorboard.writer.close()
    tensorboard.writer = None  # as if its store had gone away
    monitor.poll()
    assert monitor.trackers == [] and "dropping the TensorBoardTracker" in caplog.text


def test_sample_cells_show_each_turn_with_its_tool_calls():
    messages = [{"role": "assistant", "content": "",
                 "tool_calls": [{"function": {"name": "add", "arguments": '{"a": 1}'}}]},
                {"role": "tool", "content": "2"}]  # fmt: skip
    assert message_text(messages) == 'assistant: \n[tool call] add({"a": 1})\ntool: 2'
