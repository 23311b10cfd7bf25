"""`asyncrl view` as users start it: a real server on 127.0.0.1 over a run dir that changes under it."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import httpx
import pytest

from asyncrl.transport.layout import samples_file
from asyncrl.transport.metrics import append_metrics
from tests.viewer_process import rendered_page, start_viewer


def _run_dir(path, steps=3):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(f'max_steps = {steps}\n[model]\npath = "tiny"\n')
    for step in range(1, steps + 1):
        append_metrics(path, "orchestrator", step, {"reward_mean": step / 10, "off_policy_max": 1})
        append_metrics(path, "trainer", step, {"loss": 1 / step})
        samples = samples_file(path, step)
        samples.parent.mkdir(parents=True, exist_ok=True)
        record = {"prompt": [{"role": "user", "content": f"Reverse: text{step}"}],
                  "completion": [{"role": "assistant", "content": f"{step}txet"}], "reward": 1.0,
                  "policy_version": step - 1}  # fmt: skip
        samples.write_text(json.dumps(record) + "\n")
    return path


VIEW = [sys.executable, "-m", "asyncrl.cli", "view"]


@pytest.fixture
def viewer(tmp_path):
    started = []

    def start(*args, **kwargs):
        started.append(start_viewer(*args, **kwargs))
        return started[-1][1]

    yield start
    for process, _ in started:
        process.terminate()
        process.wait(timeout=10)


def test_the_viewer_serves_the_page_the_run_its_curves_data_and_each_steps_rollouts(tmp_path, viewer):
    url = viewer(str(_run_dir(tmp_path / "run")))
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "static/viewer.js" in page.text
    assert "function drawChart" in httpx.get(url + "/static/viewer.js").text
    run = httpx.get(url + "/api/run").json()
    assert (run["name"], run["state"], run["step"], run["sample_steps"]) == ("run", "finished", 3, [1, 2, 3])
    metrics = httpx.get(url + "/api/metrics")
    assert [r["loss"] for r in metrics.json()["rows"] if r["component"] == "trainer"] == [1, 0.5, 1 / 3]
    assert (
        httpx.get(url + "/api/metrics", headers={"If-None-Match": metrics.headers["etag"]}).status_code == 304
    )
    step = httpx.get(url + "/api/samples/2").json()
    assert (
        step["rollouts"][0]["completion"][0]["content"] == "2txet"
        and step["rollouts"][0]["off_policy_lag"] == 1
    )
    found = httpx.get(url + "/api/search", params={"q": "TEXT3"}).json()["rollouts"]
    assert [r["step"] for r in found] == [3]


def test_new_steps_show_and_a_step_deleted_or_half_written_while_viewing_is_a_message_not_a_crash(
    tmp_path, viewer
):
    run_dir = _run_dir(tmp_path / "run")
    url = viewer(str(run_dir))
    tag = httpx.get(url + "/api/metrics").headers["etag"]
    append_metrics(run_dir, "trainer", 4, {"loss": 0.2})
    assert httpx.get(url + "/api/metrics", headers={"If-None-Match": tag}).status_code == 200

    samples_file(run_dir, 2).unlink()
    gone = httpx.get(url + "/api/samples/2")
    assert gone.status_code == 404 and "step 2 has no rollouts in" in gone.json()["detail"]
    with open(samples_file(run_dir, 3), "a") as f:
        f.write('{"prompt": "half')
    half = httpx.get(url + "/api/samples/3").json()
    assert len(half["rollouts"]) == 1 and "line 2 of step_3.jsonl is cut short" in half["problems"][0]
    assert httpx.get(url + "/api/run").json()["sample_steps"] == [
        1,
        3,
    ]  # still serving, the step list updated


def test_a_path_that_is_no_run_dir_stops_the_command_with_what_to_give(tmp_path):
    result = subprocess.run([*VIEW, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "is not a run dir" in result.stderr and "Traceback" not in result.stderr
    missing = subprocess.run(VIEW, capture_output=True, text=True)
    assert missing.returncode == 2 and "give the RUN_DIR" in missing.stderr


def test_off_loopback_the_viewer_needs_a_token_and_every_route_checks_it(tmp_path, viewer):
    run_dir = _run_dir(tmp_path / "run")
    open_door = subprocess.run([*VIEW, str(run_dir), "--host", "0.0.0.0"], capture_output=True, text=True)
    assert open_door.returncode == 2 and "give --token" in open_door.stderr
    url = viewer(str(run_dir), "--host", "0.0.0.0", "--token", "s3cret")
    assert httpx.get(url + "/api/run").status_code == 401
    assert httpx.get(url + "/", params={"token": "wrong"}).status_code == 401
    with httpx.Client() as client:
        assert client.get(url + "/", params={"token": "s3cret"}).status_code == 200
        assert client.get(url + "/api/run").status_code == 200  # the page's cookie carries it on
    assert httpx.get(url + "/api/run", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_multi_turn_rollout_shows_turn_by_turn_with_its_tool_calls_in_a_real_browser(tmp_path):
    run_dir = _run_dir(tmp_path / "run", steps=1)
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
    turns = [{"role": "user", "content": "What is 2 + 3?"},
             {"role": "assistant", "content": "", "tool_calls": [call]},
             {"role": "tool", "content": "5"},
             {"role": "assistant", "content": "It is <b>5</b>."}]  # fmt: skip
    record = {"prompt": turns[:1], "completion": turns[1:], "reward": 1.0, "policy_version": 0, "tokens": 21}
    samples_file(run_dir, 1).write_text(json.dumps(record) + "\n")
    dom = rendered_page(str(run_dir), str(tmp_path / "profile"), budget_ms=5000)
    roles = re.findall(r'<div class="message (\w+)"><span class="role">', dom)
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert '→ add({"a": 2, "b": 3})' in html.unescape(dom)
    assert "It is &lt;b&gt;5&lt;/b&gt;." in dom  # the model's text is shown as text, never run as HTML
