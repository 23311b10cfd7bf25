"""`asyncrl rl`: three processes from one config, one progress bar, a report, clean failures."""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time

import httpx
import pytest
import torch

from asyncrl.inference.server_process import free_port
from asyncrl.transport.batches import load_batch
from asyncrl.transport.layout import rollouts_dir
from asyncrl.transport.metrics import read_metrics

SMALL = [
    "--orchestrator.batch-size",
    "8",
    "--orchestrator.group-size",
    "4",
    "--orchestrator.sampling.max-tokens",
    "12",
]


def _rl(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "--inference.port", str(free_port()), *SMALL, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_rl_runs_the_three_processes_and_writes_the_run_dir(tmp_path):
    run = tmp_path / "run"
    result = _rl("--output-dir", str(run), "--max-steps", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reward: first step" in result.stdout
    for name in ("config.toml", "report.png", "metrics.jsonl", "logs/inference.log", "logs/trainer.log",
                 "logs/orchestrator.log", "weights/step_3/STABLE", "samples/step_3.jsonl"):  # fmt: skip
        assert (run / name).exists(), name
    assert [m["step"] for m in read_metrics(run, "trainer")] == [1, 2, 3]
    # Each line says when its step happened and where its time went, in seconds.
    start, *lines = read_metrics(run)
    assert start["event"] == "start" and start["elapsed_s"] == 0
    assert all(start["time"] < line["time"] and line["elapsed_s"] > 0 for line in lines)
    parts = {"trainer": ["wait_s", "read_s", "pack_s", "forward_backward_s", "optimizer_s", "publish_s",
                         "checkpoint_s"],
             "orchestrator": ["scoring_s", "packing_s", "write_s", "weights_wait_s", "inference_prefill_s",
                              "inference_decode_s", "inference_idle_s"]}  # fmt: skip
    for component, names in parts.items():
        last = read_metrics(run, component)[-1]
        assert all(last[name] >= 0 for name in names), last
    assert read_metrics(run, "trainer")[-1]["forward_backward_s"] > 0
    assert read_metrics(run, "orchestrator")[-1]["inference_decode_s"] > 0
    # Output that is no terminal gets progress lines, never a bar's carriage-return redraws.
    logs = {p.name: p.read_text() for p in (run / "logs").glob("*.log")}
    assert {"trainer.log", "orchestrator.log"} <= set(logs)
    assert not [name for name, text in logs.items() if "\r" in text] and "\r" not in result.stderr
    assert "trainer: 3/3 step" in logs["trainer.log"] and "/3 step" in result.stderr

    again = _rl("--output-dir", str(run), "--max-steps", "3")
    assert again.returncode == 1 and "--resume true" in again.stderr


def test_a_crashing_process_stops_the_run_and_shows_its_log(tmp_path):
    result = _rl(
        "--output-dir", str(tmp_path / "run"), "--max-steps", "2", "--orchestrator.env.name", "no-such-env"
    )
    assert result.returncode == 1
    assert "orchestrator process stopped" in result.stderr and "no environment 'no-such-env'" in result.stderr


INTERRUPTED_STEPS = 30
"""Enough that the run is still going when the interrupt lands."""


def _serving(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_an_interrupted_run_stops_every_process_and_resumes_where_it_stopped(tmp_path):
    run, port = tmp_path / "run", free_port()
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "--inference.port", str(port), *SMALL,
               "--output-dir", str(run), "--max-steps", str(INTERRUPTED_STEPS),
               "--trainer.checkpoint.interval", "1",
               "--trainer.retention.rollouts", "all"]  # every batch stays, to be counted  # fmt: skip
    # A suite started as a background job inherits SIGINT ignored (shells ignore it for background jobs),
    # and the launcher would too: give it the default, as a terminal's Ctrl-C would find it.
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    launcher = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    deadline = time.monotonic() + 600
    while not _serving(port):
        assert launcher.poll() is None and time.monotonic() < deadline, "the server never came up"
        time.sleep(0.2)
    # The launcher's server takes keys it made up and handed its children in their environment only.
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    written = "".join(p.read_text() for p in run.rglob("*.toml"))
    assert "api_key = " not in written and "admin_key = " not in written
    assert f'weights_root = "{run / "weights"}"' in (run / "logs" / "inference.toml").read_text()

    # Any checkpoint from step 2 on: older ones are deleted as newer land, so a busy box may never see
    # step 2's own.
    def newest_checkpoint() -> int:
        steps = [int(p.name.removeprefix("step_")) for p in (run / "checkpoints").glob("step_*")]
        return max(steps, default=0)

    while newest_checkpoint() < 2:
        assert launcher.poll() is None and time.monotonic() < deadline, "no checkpoint from step 2 on"
        time.sleep(0.05)
    launcher.send_signal(signal.SIGINT)  # at once: the tiny model's steps take a fraction of a second
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 130 and "--resume true" in stderr
    alive = subprocess.run(["pgrep", "-f", str(run)], capture_output=True, text=True).stdout.split()
    assert not alive, "a child process outlived the launcher"

    resumed = subprocess.run([*command, "--resume", "true"], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # A step trained after the last checkpoint is trained again; its new metrics line replaces the old.
    assert [m["step"] for m in read_metrics(run, "trainer")] == list(range(1, INTERRUPTED_STEPS + 1))
    batches = sorted(int(p.name.removeprefix("step_")) for p in (run / "rollouts").glob("step_*"))
    assert batches == list(range(1, INTERRUPTED_STEPS + 1))


@pytest.mark.slow
@pytest.mark.gpu
def test_the_default_job_learns_with_the_three_processes_on_one_gpu(tmp_path):
    run = tmp_path / "run"
    devices = ["--inference.device", "cuda", "--trainer.device", "cuda"]  # each refuses to start without one
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "--inference.port", str(free_port())]
    command += ["--output-dir", str(run), *devices]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rewards = [m["reward_mean"] for m in read_metrics(run, "orchestrator")]
    assert len(rewards) == 320
    # The README's figure for the default job: the 20-step mean reward reaches 0.7 (0.76-0.80 on CPUs).
    assert statistics.fmean(rewards[-20:]) >= 0.7


@pytest.mark.slow
def test_the_moe_job_records_routing_into_its_batches_and_replays_it(tmp_path):
    run = tmp_path / "run"
    result = _rl("-c", "configs/reverse_text_moe.toml", "--model.path", "tiny-moe", "--output-dir", str(run),
                 "--max-steps", "3", "--trainer.retention.rollouts", "all")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    batch = load_batch(rollouts_dir(run, 3))
    # Every generated token has the experts that produced it (3 MoE layers, top-2), nothing else has.
    recorded = batch.routed_experts[:, 0, 0] >= 0
    assert batch.routed_experts.shape[1:] == (3, 2) and torch.equal(recorded, batch.loss_mask)
    figures = read_metrics(run, "trainer")[-1]
    assert 0 <= figures["moe/routing_mismatch_frac"] < 1 and figures["moe/expert_load_cv"] >= 0
    assert {"moe/layer0_load_cv", "moe/layer2_load_cv"} <= set(figures)
