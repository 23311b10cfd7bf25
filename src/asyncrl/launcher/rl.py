"""`asyncrl rl`: start inference, trainer and orchestrator from one config, watch them, stop them together.

Each child reads its own part of the config from `logs/<name>.toml` and writes `logs/<name>.log`. One
progress bar follows the trainer's steps with reward, tokens/s and off-policy lag; `report.png` is
refreshed as steps land. Ctrl-C stops all three and leaves a resumable run dir (`--resume true`); a
child that crashes stops the others and its log tail is shown.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from asyncrl.builtin_models import resolve_builtin_models
from asyncrl.config_loader import to_toml
from asyncrl.inference.config import ADMIN_KEY_ENV, API_KEY_ENV
from asyncrl.inference.server_process import InferenceServerProcess
from asyncrl.launcher.config import RLConfig
from asyncrl.launcher.errors import ChildFailedError
from asyncrl.launcher.report import write_report
from asyncrl.transport.layout import HEARTBEAT_S, checkpoints_root, log_file, logs_dir, weights_root
from asyncrl.transport.metrics import read_metrics
from asyncrl.transport.status import stall_reason

POLL_S = 0.5
STALL_S = HEARTBEAT_S
"""Without a new step for this long, the progress bar shows what the processes are waiting for."""
REPORT_EVERY_S = 20.0


def _child_configs(config: RLConfig, server_url: str) -> dict[str, dict]:
    run = {"output_dir": str(config.output_dir), "max_steps": config.max_steps, "seed": config.seed}
    orchestrator = config.orchestrator.model_dump(mode="json")
    orchestrator["client"]["base_urls"] = [server_url]
    trainer: dict = {
        **run,
        "model": config.model.model_dump(mode="json"),
        "trainer": config.trainer.model_dump(mode="json"),
    }
    if config.resume and checkpoints_root(config.output_dir).exists():
        trainer["resume"] = "latest"
    return {
        "trainer": trainer,
        "orchestrator": {**run, "model": config.model.model_dump(mode="json"), "orchestrator": orchestrator},
    }


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def _keys(config: RLConfig) -> dict[str, str]:
    """The server's keys (the configured ones, else new random ones), handed to the children in their
    environment rather than in the config files written under logs/."""
    configured = {API_KEY_ENV: config.inference.api_key, ADMIN_KEY_ENV: config.inference.admin_key}
    return {env: key or os.environ.get(env) or secrets.token_urlsafe(32) for env, key in configured.items()}


def _start(name: str, settings: dict, run_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    log_path = log_file(run_dir, name)
    settings_path = log_path.with_suffix(".toml")
    settings_path.write_text(to_toml(settings))
    log = open(log_path, "a")  # noqa: SIM115 - the child owns it until it exits
    command = [sys.executable, "-m", "asyncrl.cli", name, "-c", str(settings_path)]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _progress_postfix(run_dir: Path) -> tuple[int, dict[str, str]]:
    rows = read_metrics(run_dir)  # one read of the file per poll, split here
    trainer = [r for r in rows if r["component"] == "trainer"]
    orchestrator = [r for r in rows if r["component"] == "orchestrator"]
    postfix = {}
    if orchestrator:
        last = orchestrator[-1]
        postfix = {"reward": f"{last['reward_mean']:.3f}", "tok/s": f"{last['tokens_per_s']:.0f}",
                   "lag": str(int(last["off_policy_max"]))}  # fmt: skip
    return (trainer[-1]["step"] if trainer else 0), postfix


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_rl(config: RLConfig) -> None:
    # A SIGTERM (from a job scheduler, `kill`) stops the children like Ctrl-C rather than orphaning them.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    run_dir = config.output_dir
    if run_dir.exists() and any(run_dir.iterdir()) and not config.resume:
        raise ChildFailedError(
            f"{run_dir} is not empty: pass --resume true to continue it, or another --output-dir"
        )
    logs_dir(run_dir).mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(config))
    # A built-in model is built (the warm-started one by a short SFT) once, here, not by three children.
    config = resolve_builtin_models(config)
    keys = _keys(config)
    # The server loads only what the trainer publishes, and only from those who hold the keys.
    inference = config.inference.model_copy(update={"weights_root": weights_root(run_dir)})
    inference_log = log_file(run_dir, "inference")
    server = InferenceServerProcess(config.model, inference, config.seed, inference_log, env=keys)
    with server:
        processes = {
            name: _start(name, settings, run_dir, keys)
            for name, settings in _child_configs(config, server.url).items()
        }
        bar = tqdm(total=config.max_steps, desc="rl", unit="step")
        last_step, last_progress, last_report = 0, time.monotonic(), 0.0
        try:
            while True:
                step, postfix = _progress_postfix(run_dir)
                if step > last_step:
                    last_step, last_progress = step, time.monotonic()
                    # Plotting costs CPU the three processes need: refresh it now and then, not every step.
                    if last_progress - last_report > REPORT_EVERY_S:
                        write_report(run_dir)
                        last_report = time.monotonic()
                elif time.monotonic() - last_progress > STALL_S:
                    postfix["waiting"] = stall_reason(run_dir)
                bar.n = step
                bar.set_postfix(postfix)
                failed = [n for n, p in processes.items() if p.poll() not in (None, 0)]
                if failed or server.process.poll() is not None:
                    name = failed[0] if failed else "inference"
                    raise ChildFailedError(f"the {name} process stopped; the tail of logs/{name}.log:\n"
                                           + _tail(log_file(run_dir, name)))  # fmt: skip
                if all(p.poll() == 0 for p in processes.values()):
                    break
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            print(
                f"\nstopping; continue with: asyncrl rl -c {run_dir / 'config.toml'} --resume true",
                file=sys.stderr,
            )
            raise
        finally:
            bar.close()
            _stop(processes)
    write_report(run_dir)
    _print_summary(run_dir, time.monotonic() - started)


def _print_summary(run_dir: Path, seconds: float) -> None:
    orchestrator = read_metrics(run_dir, "orchestrator")
    if not orchestrator:
        return
    first, last = orchestrator[0], orchestrator[-5:]
    mean_last = sum(m["reward_mean"] for m in last) / len(last)
    print(
        f"reward: first step {first['reward_mean']:.3f}, mean of the last {len(last)} steps {mean_last:.3f}"
    )
    print(f"wall time: {seconds / 60:.1f} min for {len(orchestrator)} steps")
    print(f"run dir: {run_dir} (report.png, metrics.jsonl, weights/)")
