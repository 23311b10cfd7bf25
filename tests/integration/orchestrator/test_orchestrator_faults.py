"""The orchestrator survives being killed, and an inference server dying under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asyncrl.envs.registry import load_environment
from asyncrl.models import load_tokenizer
from asyncrl.orchestrator.tasks import TaskStream
from asyncrl.transport.batches import load_batch, load_progress
from asyncrl.transport.layout import rollouts_dir
from asyncrl.transport.metrics import read_metrics

STEPS = 5


def _trainer(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncrl.cli", "trainer", "--output-dir", str(run_dir),
         "--max-steps", str(STEPS), "--trainer.num-threads", "1", "--trainer.checkpoint.interval", "0",
         "--trainer.retention.rollouts", "all"],  # every batch is read back
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _orchestrator(run_dir: Path, urls: list[str]) -> list[str]:
    return [sys.executable, "-m", "asyncrl.cli", "orchestrator", "--output-dir", str(run_dir),
            "--max-steps", str(STEPS), "--orchestrator.client.base-urls", json.dumps(urls),
            "--orchestrator.client.retries", "1", "--orchestrator.batch-size", "16",
            "--orchestrator.group-size", "4", "--orchestrator.max-inflight", "8",
            "--orchestrator.sampling.max-tokens", "24"]  # fmt: skip


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "the process ended early"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _prompts_per_group(run_dir: Path) -> list[tuple[int, ...]]:
    """One prompt per group (the 4 samples of a group share it), over all batches."""
    prompts = []
    for step in range(1, STEPS + 1):
        batch = load_batch(rollouts_dir(run_dir, step)).samples()
        for first in batch[::4]:
            prompts.append(tuple(t for t, m in zip(first.input_ids, first.loss_mask, strict=True) if not m))
    return prompts


@pytest.mark.slow
def test_a_killed_orchestrator_restarts_without_repeating_or_skipping(start_server, tmp_path):
    server = start_server("tiny")
    trainer = _trainer(tmp_path)
    first = subprocess.Popen(
        _orchestrator(tmp_path, [server.url]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_for(rollouts_dir(tmp_path, 2), first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = subprocess.run(
        _orchestrator(tmp_path, [server.url]), capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert trainer.wait(timeout=600) == 0

    steps = sorted(int(p.name.removeprefix("step_")) for p in (tmp_path / "rollouts").glob("step_*"))
    assert steps == list(range(1, STEPS + 1))
    assert [m["step"] for m in read_metrics(tmp_path, "trainer")] == list(range(1, STEPS + 1))
    prompts = _prompts_per_group(tmp_path)
    assert len(prompts) == len(set(prompts)), "a task was trained on twice"
    # Every task handed out is in a batch or still pending in the last progress record: none skipped.
    progress = load_progress(rollouts_dir(tmp_path, STEPS))
    env = load_environment("reverse-text")
    stream = TaskStream(len(env.dataset), seed=0)
    handed_out = [stream.next() for _ in range(progress["cursor"])]
    tokenizer = load_tokenizer("tiny")

    def prompt_ids(index: int) -> tuple[int, ...]:
        messages = env.dataset[index]["prompt"]
        return tuple(tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])

    assert sorted(prompts + [prompt_ids(i) for i in progress["pending"]]) == sorted(
        map(prompt_ids, handed_out)
    )


@pytest.mark.slow
def test_the_run_completes_on_the_other_server_when_one_dies(start_server, tmp_path):
    doomed, survivor = start_server("tiny"), start_server("tiny")
    trainer = _trainer(tmp_path)
    orchestrator = subprocess.Popen(
        _orchestrator(tmp_path, [doomed.url, survivor.url]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(rollouts_dir(tmp_path, 1), orchestrator)
    doomed.process.kill()
    _, stderr = orchestrator.communicate(timeout=600)
    assert orchestrator.returncode == 0, stderr[-3000:]
    assert trainer.wait(timeout=600) == 0
    assert "is down" in stderr
    assert len(read_metrics(tmp_path, "orchestrator")) == STEPS
