"""`asyncrl sft` on generated reverse-text data lowers the eval loss, and its weights serve."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from asyncrl.envs.reverse_text_tasks import reverse_text_tasks, sft_records
from asyncrl.models import load_model
from asyncrl.transport.metrics import read_metrics


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny", "tiny-qwen3-moe"])
def test_sft_lowers_eval_loss_and_its_weights_load_in_the_server(tmp_path, start_server, model):
    data = tmp_path / "reverse.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sft_records(reverse_text_tasks(400, seed=0))))
    run = tmp_path / "sft"
    command = [sys.executable, "-m", "asyncrl.cli", "sft", "--sft.data", str(data), "--output-dir", str(run)]
    command += ["--model.path", model]
    command += ["--sft.max-steps", "40", "--sft.batch-size", "16", "--sft.eval-interval", "20"]
    command += ["--trainer.optim.lr", "3e-3", "--trainer.num-threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    evals = {m["step"]: m["eval_loss"] for m in read_metrics(run, "sft") if "eval_loss" in m}
    assert sorted(evals) == [0, 20, 40]
    assert evals[40] < evals[0] - 1.0, evals

    server = start_server(str(run / "weights" / "step_40"))
    messages = reverse_text_tasks(1, seed=99)[0]["prompt"]
    body = {
        "model": str(run / "weights" / "step_40"),
        "messages": messages,
        "max_tokens": 20,
        "temperature": 0,
    }
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text


def test_malformed_sft_lines_are_reported_with_their_line_number(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": 3}\n')
    command = [
        sys.executable,
        "-m",
        "asyncrl.cli",
        "sft",
        "--sft.data",
        str(data),
        "--output-dir",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert f"{data}:2" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_sft_with_lora_lowers_eval_loss_and_leaves_a_peft_adapter(tmp_path):
    peft = pytest.importorskip("peft")
    data = tmp_path / "reverse.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sft_records(reverse_text_tasks(400, seed=0))))
    run = tmp_path / "sft"
    command = [sys.executable, "-m", "asyncrl.cli", "sft", "--sft.data", str(data), "--output-dir", str(run)]
    command += ["--sft.max-steps", "40", "--sft.batch-size", "16", "--sft.eval-interval", "20"]
    command += ["--trainer.optim.lr", "1e-2", "--trainer.num-threads", "1", "--model.lora.rank", "16"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    evals = {m["step"]: m["eval_loss"] for m in read_metrics(run, "sft") if "eval_loss" in m}
    assert evals[40] < evals[0] - 0.5, evals
    adapter = run / "weights" / "step_40"
    assert (adapter / "adapter_config.json").exists() and not (adapter / "model.safetensors").exists()
    peft.PeftModel.from_pretrained(load_model("tiny"), str(adapter))
