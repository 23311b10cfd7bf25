from __future__ import annotations

import json
import threading
import time

import pytest

from asyncrl.transport.batches import BatchFormatError, Sample, load_batch, write_batch
from asyncrl.transport.layout import WaitTimeout, latest_weights, publish_weights, rollouts_dir, wait_for
from asyncrl.transport.metrics import append_metrics, read_metrics


def _samples() -> list[Sample]:
    return [
        Sample(
            [1, 2, 3], [False, True, True], [0.5] * 3, [0.0, -1.5, -0.25], policy_version=3, temperature=0.7
        ),
        Sample([4, 5], [False, True], [-1.0] * 2, [0.0, -2.0], policy_version=4),
    ]


def test_batch_round_trips(tmp_path):
    path = write_batch(tmp_path, 5, _samples())
    assert path == rollouts_dir(tmp_path, 5)
    loaded = load_batch(path).samples()
    assert loaded[0].input_ids == [1, 2, 3] and loaded[1].policy_version == 4
    assert loaded[0].temperature == pytest.approx(0.7)
    assert loaded[0].inference_logprobs == pytest.approx([0.0, -1.5, -0.25])
    assert [s.loss_mask for s in loaded] == [s.loss_mask for s in _samples()]


def test_batch_leaves_no_temporary_dirs(tmp_path):
    write_batch(tmp_path, 1, _samples())
    assert [p.name for p in (tmp_path / "rollouts").iterdir()] == ["step_1"]


def test_a_step_written_again_replaces_the_first_and_leaves_nothing_else(tmp_path):
    publish_weights(tmp_path, 3, lambda d: (d / "model.safetensors").write_text("first"))
    publish_weights(tmp_path, 3, lambda d: (d / "model.safetensors").write_text("redone"))
    assert [p.name for p in (tmp_path / "weights").iterdir()] == ["step_3"]
    assert (tmp_path / "weights" / "step_3" / "model.safetensors").read_text() == "redone"


def test_ragged_samples_are_refused(tmp_path):
    with pytest.raises(ValueError, match="per-token lists"):
        write_batch(tmp_path, 1, [Sample([1, 2], [True], [0.0, 0.0], [0.0, 0.0], 0)])


def test_a_batch_of_another_format_version_is_a_clear_error(tmp_path):
    path = write_batch(tmp_path, 1, _samples())
    file = path / "batch.safetensors"
    raw = file.read_bytes()
    file.write_bytes(raw.replace(b'"version":"1"', b'"version":"9"'))
    with pytest.raises(BatchFormatError, match="v9"):
        load_batch(path)
    file.write_bytes(b"garbage")
    with pytest.raises(BatchFormatError, match="not a readable batch"):
        load_batch(path)


def test_weights_count_only_once_stable(tmp_path):
    publish_weights(tmp_path, 2, lambda d: (d / "model.safetensors").write_text("x"))
    (tmp_path / "weights" / "step_9").mkdir()  # being written: no STABLE yet
    assert latest_weights(tmp_path) == (2, tmp_path / "weights" / "step_2")


def test_wait_for_returns_when_the_path_appears_and_times_out_otherwise(tmp_path):
    target = tmp_path / "later"
    threading.Timer(0.2, target.mkdir).start()
    assert wait_for(target, "a dir", timeout_s=10) >= 0.1
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match="never"):
        wait_for(tmp_path / "never", "a dir", timeout_s=0.2)
    assert time.monotonic() - start < 5


def test_metrics_are_json_lines_by_component(tmp_path):
    append_metrics(tmp_path, "trainer", 1, {"loss": 0.5})
    append_metrics(tmp_path, "orchestrator", 1, {"reward_mean": 0.1})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert (first["step"], first["component"], first["loss"]) == (1, "trainer", 0.5)
    [line] = read_metrics(tmp_path, "orchestrator")
    assert (line["step"], line["component"], line["reward_mean"]) == (1, "orchestrator", 0.1)
