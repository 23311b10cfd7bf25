"""Commands of the verifiers tests, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from asyncrl.inference.server_process import free_port
from asyncrl.models import load_tokenizer
from asyncrl.transport.batches import load_batch
from asyncrl.transport.layout import rollouts_root
from asyncrl.transport.metrics import read_metrics


def asyncrl_cli(*args: str) -> subprocess.CompletedProcess:
    """`asyncrl ARGS...` as a user runs it."""
    command = [sys.executable, "-m", "asyncrl.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def rl_two_steps(run: Path, *args: str) -> list[str]:
    """`asyncrl rl ARGS...` for two steps on the untrained tiny model (replies of all lengths, so the
    rollouts of a group differ); checks that both steps trained, on samples whose loss mask covers
    generated tokens and whose inference logprobs sit on exactly those. Returns the first batch's prompts
    as the tiny tokenizer decodes them."""
    result = asyncrl_cli("rl", "--inference.port", str(free_port()), "--output-dir", str(run),
                         "--max-steps", "2", "--model.path", "tiny", "--orchestrator.env.args", "{}",
                         "--orchestrator.sampling.max-tokens", "12", *args)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [m["step"] for m in read_metrics(run, "trainer")] == [1, 2]
    samples = load_batch(rollouts_root(run) / "step_1").samples()
    assert samples and all(any(s.loss_mask) for s in samples)
    assert all(
        (lp != 0) <= m for s in samples for lp, m in zip(s.inference_logprobs, s.loss_mask, strict=True)
    )
    tokenizer = load_tokenizer("tiny")
    return [tokenizer.decode(s.input_ids[: s.loss_mask.index(True)]) for s in samples]
