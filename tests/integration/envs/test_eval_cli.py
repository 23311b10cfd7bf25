"""`asyncrl eval` end to end: the built-in server, a given URL, and the failures a user meets."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from asyncrl.inference.server_process import free_port


def _eval(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "asyncrl.cli", "eval", *args], capture_output=True, text=True, timeout=timeout
    )


def _check_outputs(out_dir, rollouts: int) -> dict:
    lines = (out_dir / "results.jsonl").read_text().splitlines()
    assert len(lines) == rollouts
    record = json.loads(lines[0])
    assert {"task", "completion", "reward", "metrics"} <= set(record)
    return json.loads((out_dir / "summary.json").read_text())


def test_eval_starts_the_built_in_server_on_a_model_path(tmp_path):
    result = _eval("reverse-text", "--model.path", "tiny", "--num-examples", "4",
                   "--rollouts-per-example", "2", "--sampling.max-tokens", "16",
                   "--output-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = _check_outputs(tmp_path, 8)
    assert set(summary["pass_at_k"]) == {"1", "2"}
    assert "lcs_ratio" in summary["metrics"]
    assert "pass@2" in result.stdout


def test_eval_runs_an_moe_model(tmp_path):
    result = _eval("reverse-text", "--model.path", "tiny-moe", "--num-examples", "2",
                   "--rollouts-per-example", "2", "--sampling.max-tokens", "8",
                   "--output-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(_check_outputs(tmp_path, 4)["pass_at_k"]) == {"1", "2"}


def test_eval_against_a_running_server_by_url(server, tmp_path):
    result = _eval("reverse-text", "--base-url", f"{server.url}/v1", "--model", "tiny", "--num-examples", "3",
                   "--rollouts-per-example", "1", "--env-args", '{"seed": 3, "max_chars": 8}',
                   "--output-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = _check_outputs(tmp_path, 3)
    assert summary["env_args"] == {"seed": 3, "max_chars": 8}


def test_a_server_that_is_down_is_a_clear_error_after_retries(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = _eval("reverse-text", "--base-url", url, "--retries", "1", "--num-examples", "1",
                   "--output-dir", str(tmp_path), timeout=120)  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "failed 2 times" in last and "Traceback" not in result.stderr


def test_unknown_environments_and_bad_arguments_are_clear_errors(tmp_path):
    unknown = _eval("no-such-env", "--output-dir", str(tmp_path))
    assert (
        unknown.returncode == 1 and "installed: arithmetic, calculator, code, reverse-text" in unknown.stderr
    )
    bad = _eval("reverse-text", "--env-args", '{"colour": 1}', "--output-dir", str(tmp_path))
    assert bad.returncode == 1 and "min_chars" in bad.stderr


def test_a_server_that_dies_mid_run_keeps_the_finished_rollouts(start_server, tmp_path):
    server = start_server("tiny")
    command = [sys.executable, "-m", "asyncrl.cli", "eval", "reverse-text", "--base-url", server.url,
               "--model", "tiny", "--num-examples", "400", "--rollouts-per-example", "1",
               "--max-concurrent", "2", "--sampling.max-tokens", "32", "--retries", "1",
               "--output-dir", str(tmp_path)]  # fmt: skip
    evaluation = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = tmp_path / "results.jsonl"
    deadline = time.monotonic() + 300
    while not (results.exists() and len(results.read_text().splitlines()) >= 3):
        assert evaluation.poll() is None and time.monotonic() < deadline, "eval ended or stalled early"
        time.sleep(0.05)
    server.process.kill()
    _, stderr = evaluation.communicate(timeout=300)
    assert evaluation.returncode == 1
    assert "failed 2 times" in stderr.strip().splitlines()[-1]
    kept = results.read_text().splitlines()
    assert 3 <= len(kept) < 400
    assert all(json.loads(line)["reward"] >= 0 for line in kept)


def test_an_earlier_evals_results_are_never_overwritten(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"reward": 1.0}\n')
    result = _eval(
        "reverse-text", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--output-dir", str(tmp_path)
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "earlier eval's results.jsonl" in result.stderr
    assert (tmp_path / "results.jsonl").read_text() == '{"reward": 1.0}\n'
