"""`asyncrl eval` and `asyncrl rl` on verifiers tasksets, end to end, as a user runs them."""

from __future__ import annotations

import json

import pytest

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess, free_port
from asyncrl.transport.batches import load_batch
from asyncrl.transport.layout import rollouts_root
from asyncrl.transport.metrics import read_metrics
from tests.verifiers_runs import asyncrl_cli, rl_two_steps

TOOL_RENDERER = json.dumps({"name": "default", "tool_parser": "qwen3"})


@pytest.mark.slow
def test_eval_runs_a_verifiers_taskset_and_reports_its_metrics_and_pass_at_k(tmp_path):
    result = asyncrl_cli("eval", "asyncrl-reverse-text", "--source", "verifiers", "--model.path", "tiny",
                      "--num-examples", "3", "--rollouts-per-example", "2", "--sampling.max-tokens", "12",
                      "--output-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rollouts"] == 6 and summary["errors"] == 0
    assert set(summary["metrics"]) == {"exact"} and set(summary["pass_at_k"]) == {"1", "2"}
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(r["tokens"] > 0 and r["completion"][0]["role"] == "assistant" for r in records)
    assert (tmp_path / "logs" / "env_worker_0.log").exists()


@pytest.mark.slow
def test_eval_hands_its_api_key_to_the_env_server_workers(tmp_path, tiny_dir):
    """The workers call the server themselves, with the key `--api-key` gave (not only $ASYNCRL_API_KEY)."""
    inference = InferenceConfig(port=0, num_threads=1, api_key="the-key")
    with InferenceServerProcess(ModelConfig(path="tiny"), inference, 0, tmp_path / "server.log") as server:
        result = asyncrl_cli("eval", "asyncrl-reverse-text", "--source", "verifiers",
                          "--model.path", str(tiny_dir), "--model.name", "tiny", "--base-url", server.url,
                          "--api-key", "the-key", "--num-examples", "2", "--rollouts-per-example", "1",
                          "--sampling.max-tokens", "4", "--output-dir", str(tmp_path / "eval"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["rollouts"] == 2 and summary["errors"] == 0


@pytest.mark.slow
def test_rl_trains_on_a_taskset_whose_failing_episodes_are_counted_and_left_out(tmp_path, vf_packages):
    run = tmp_path / "run"
    modes = json.dumps({"modes": ["ok"] * 7 + ["raise"]})
    result = asyncrl_cli(
        "rl", "--inference.port", str(free_port()), "--output-dir", str(run), "--max-steps", "3",
        "--orchestrator.env.source", "verifiers", "--orchestrator.env.name", "asyncrl-test-modes",
        "--orchestrator.env.args", modes, "--orchestrator.env.verifiers.retries", "0",
        "--orchestrator.batch-size", "8", "--orchestrator.group-size", "2",
        "--orchestrator.sampling.max-tokens", "12",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [m["step"] for m in read_metrics(run, "trainer")] == [1, 2, 3]
    orchestrator = read_metrics(run, "orchestrator")
    assert sum(m["dropped_errors"] for m in orchestrator) > 0
    assert all(0.0 <= m["env_replied"] <= 1.0 for m in orchestrator)
    samples = load_batch(rollouts_root(run) / "step_1").samples()
    assert len(samples) == 8 and all(any(s.loss_mask) for s in samples)
    # The sampler's logprobs ride along on exactly the generated tokens.
    assert all(
        (lp != 0) <= m for s in samples for lp, m in zip(s.inference_logprobs, s.loss_mask, strict=True)
    )


@pytest.mark.slow
def test_eval_and_rl_run_a_taskset_with_a_tool(tmp_path, vf_packages):
    """The tool's MCP server starts per episode and its schema reaches the prompt (renderers' default
    renderer takes tools only with a tool parser); the tiny model never calls it, so the taskset's brevity
    reward is what it learns from. Each episode starts the tool's server, a Python process importing
    verifiers (seconds of CPU): few episodes in flight keep the two cores for the run."""
    result = asyncrl_cli("eval", "asyncrl-test-calc", "--source", "verifiers", "--model.path", "tiny",
                      "--verifiers.renderer", TOOL_RENDERER,
                      "--num-examples", "1", "--rollouts-per-example", "2", "--sampling.max-tokens", "12",
                      "--output-dir", str(tmp_path / "eval"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["rollouts"] == 2 and summary["errors"] == 0
    assert set(summary["metrics"]) == {"tool_messages"}
    prompts = rl_two_steps(
        tmp_path / "run",
        "--orchestrator.env.source", "verifiers", "--orchestrator.env.name", "asyncrl-test-calc",
        "--orchestrator.env.verifiers.renderer", TOOL_RENDERER,
        "--orchestrator.batch-size", "4", "--orchestrator.group-size", "2",
        "--orchestrator.max-inflight", "4",
    )  # fmt: skip
    assert all("What is 2 + 3?" in p and "calc_add" in p for p in prompts)
