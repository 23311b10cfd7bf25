"""`asyncrl rl`: start inference, trainer and orchestrator from one config, watch them, stop them together.

Each child reads its own part of the config from `logs/<name>.toml` and writes `logs/<name>.log`. One
progress bar follows the trainer's steps with reward, tokens/s and off-policy lag; `report.png` is
refreshed as steps land. Ctrl-C stops all three and leaves a resumable run dir (`--resume true`). A
child that crashes is restarted, the others running on (`launcher.restarts`); one that crashes before the
first step, or too often, stops the run with its log tail; one whose disk is full stops it at once.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from tqdm import tqdm

from asyncrl.builtin_models import resolve_builtin_models
from asyncrl.children import die_with_parent
from asyncrl.config_loader import to_toml
from asyncrl.inference.config import ADMIN_KEY_ENV, API_KEY_ENV
from asyncrl.inference.server_process import InferenceServerProcess, ServerStartError
from asyncrl.launcher.config import RLConfig
from asyncrl.launcher.errors import ChildFailedError
from asyncrl.launcher.report import write_report
from asyncrl.monitor.service import Monitor
from asyncrl.network import secret
from asyncrl.progress import progress_bar
from asyncrl.transport.layout import (
    HEARTBEAT_S,
    DiskFullError,
    config_file,
    full_disk_reported,
    log_file,
    logs_dir,
    weights_root,
)
from asyncrl.transport.metrics import append_metrics, read_metrics, read_new_lines
from asyncrl.transport.status import stall_reason

POLL_S = 0.5
STALL_S = HEARTBEAT_S
"""Without a new step for this long, the progress bar shows what the processes are waiting for."""
SMOOTH_STEPS = 5
"""The progress bar's tokens/s is the mean of this many steps' (one step's alone jumps about)."""
REPORT_EVERY_S = 60.0
"""report.png is redrawn this often while the run goes (a redraw costs about a CPU-second)."""
HEALTHY_S = 30.0
"""A child that ran this long before it crashed starts its count of crashes in a row (and its backoff)
again."""


def _child_configs(config: RLConfig, server_url: str, resume: bool) -> dict[str, dict]:
    run = {"output_dir": str(config.output_dir), "max_steps": config.max_steps, "seed": config.seed}
    orchestrator = config.orchestrator.model_dump(mode="json")
    orchestrator["client"]["base_urls"] = [server_url]
    trainer: dict = {
        **run,
        "model": config.model.model_dump(mode="json"),
        "trainer": config.trainer.model_dump(mode="json"),
    }
    if resume:
        trainer["resume"] = "if-any"
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
    return {env: secret(key, env) or secrets.token_urlsafe(32) for env, key in configured.items()}


def _start(name: str, settings: dict, run_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    log_path = log_file(run_dir, name)
    settings_path = log_path.with_suffix(".toml")
    settings_path.write_text(to_toml(settings))
    log = open(log_path, "a")  # noqa: SIM115 - the child owns it until it exits
    command = [sys.executable, "-m", "asyncrl.cli", name, "-c", str(settings_path)]
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, preexec_fn=die_with_parent
    )


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


class _Progress:
    """What the progress bar shows, from the metrics lines added since the last poll (rereading the whole
    file twice a second costs the CPU the three processes share, more the longer the run)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.offset = run_dir, 0
        self.step = 0
        self.recent: list[dict] = []
        """The orchestrator's last SMOOTH_STEPS lines."""

    def poll(self) -> tuple[int, dict[str, str]]:
        """The trainer's last step and the bar's postfix."""
        rows, self.offset = read_new_lines(self.run_dir, self.offset)
        for row in rows:
            if row["component"] == "trainer":
                self.step = row["step"]
            elif row["component"] == "orchestrator":
                # A restarted orchestrator writes its steps from its last batch on again: those replace.
                self.recent = [r for r in self.recent if r["step"] < row["step"]][-SMOOTH_STEPS + 1 :] + [row]
        if not self.recent:
            return self.step, {}
        last = self.recent[-1]
        tokens_per_s = sum(r["tokens_per_s"] for r in self.recent) / len(self.recent)
        return self.step, {"reward": f"{last['reward_mean']:.3f}", "tok/s": f"{tokens_per_s:.0f}",
                           "lag": str(int(last["off_policy_max"]))}  # fmt: skip


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Child:
    """One supervised process of the run: how to (re)start it, and its restarts so far."""

    def __init__(
        self, name: str, start: Callable[[int], subprocess.Popen], running: subprocess.Popen | None = None
    ) -> None:
        """`start(restarts)` starts the process (again, after that many restarts); `running`: a process
        already started."""
        self.name, self._start = name, start
        self.process = running or start(0)
        self.started = time.monotonic()
        self.restarts = 0
        """Restarts so far."""
        self.in_a_row = 0
        """Crashes since the child last ran for HEALTHY_S: what launcher.restarts bounds."""
        self.restart_at: float | None = None
        """When a crashed child is due to start again (None: it is not waiting to)."""

    def crashed(self) -> int | None:
        """The exit code of a child that stopped when it should not have; None while it runs or after it
        finished its work (a server never does)."""
        code = self.process.poll()
        return None if code is None or (code == 0 and self.name != "inference") else code

    def restart(self) -> None:
        self.restarts += 1
        self.restart_at = None
        self.process = self._start(self.restarts)
        self.started = time.monotonic()


def _supervise(children: list[Child], config: RLConfig, step: int) -> None:
    """Restart crashed children, each after its backoff; ChildFailedError when one cannot be: it crashed
    before the run's first step (a bad config or environment, which a restart repeats) or used up
    launcher.restarts; DiskFullError when one stopped because the run's disk is full."""
    now = time.monotonic()
    for child in children:
        code = child.crashed()
        if code is None:
            continue
        log_path = log_file(config.output_dir, child.name)
        if code == DiskFullError.exit_code:  # its own log may not hold why: the disk that is full holds it
            raise DiskFullError(config.output_dir)
        if child.restart_at is None:
            if now - child.started > HEALTHY_S:
                child.in_a_row = 0
            if step == 0 or child.in_a_row >= config.launcher.restarts:
                tried = f" ({child.in_a_row} restarts in a row, launcher.restarts)" if child.in_a_row else ""
                raise ChildFailedError(f"the {child.name} process stopped{tried}; the tail of "
                                       f"logs/{child.name}.log:\n" + _tail(log_path))  # fmt: skip
            delay = config.launcher.restart_backoff_s * 2**child.in_a_row
            child.in_a_row += 1
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            line = (f"asyncrl rl: the {child.name} process stopped ({how}) at step {step}; restarting it "
                    f"in {delay:g}s (restart {child.restarts + 1}; {child.in_a_row} in a row of at most "
                    f"{config.launcher.restarts})")  # fmt: skip
            tqdm.write(line, file=sys.stderr)
            with full_disk_reported(log_path), open(log_path, "a") as f:
                f.write(line + "\n")
            append_metrics(config.output_dir, "launcher", step,
                           {"event": "restart", "process": child.name, "exit_code": code,
                            "restart": child.restarts + 1})  # fmt: skip
            child.restart_at = now + delay
        elif now >= child.restart_at:
            child.restart()


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
    config_file(run_dir).write_text(to_toml(config))
    append_metrics(run_dir, "launcher", 0, {"event": "start"})  # the clock of every line's elapsed_s
    # A built-in model is built (the warm-started one by a short SFT) once, here, not by three children.
    config = resolve_builtin_models(config)
    keys = _keys(config)
    # The server loads only what the trainer publishes, and only from those who hold the keys.
    inference = config.inference.model_copy(update={"weights_root": weights_root(run_dir)})
    inference_log = log_file(run_dir, "inference")
    server = InferenceServerProcess(config.model, inference, config.seed, inference_log, env=keys)
    monitor = Monitor(run_dir, config.monitor) if config.monitor.any else nullcontext()
    with monitor, server.launched():

        def starter(name: str) -> Callable[[int], subprocess.Popen]:
            def start(restarts: int) -> subprocess.Popen:
                # A restarted trainer resumes from its newest checkpoint; the orchestrator always continues
                # from its last batch.
                settings = _child_configs(config, server.url, config.resume or restarts > 0)[name]
                return _start(name, settings, run_dir, keys)

            return start

        def restart_server(_: int) -> subprocess.Popen:
            try:
                server.restart()
            except ServerStartError as e:  # its stopped process counts as one more crash in a row
                tqdm.write(f"asyncrl rl: {e}", file=sys.stderr)
            return server.process

        # The trainer and the orchestrator start with the server, not after it: they load while it does
        # (the orchestrator waits for it to answer), seconds off every run's start.
        url = server.url
        children = [Child(name, starter(name)) for name in ("trainer", "orchestrator")]
        bar = progress_bar(config.max_steps, "rl", unit="step")
        try:
            server.wait_ready()
            if server.url != url:  # its port was taken: the orchestrator must call it at its new one
                _stop({"orchestrator": children[1].process})
                children[1] = Child("orchestrator", starter("orchestrator"))
            children.insert(0, Child("inference", restart_server, running=server.process))
            _watch(children, config, bar)
        except KeyboardInterrupt:
            print(
                f"\nstopping; continue with: asyncrl rl -c {config_file(run_dir)} --resume true",
                file=sys.stderr,
            )
            raise
        finally:
            bar.close()
            _stop({c.name: c.process for c in children if c.name != "inference"})
    write_report(run_dir)
    _print_summary(run_dir, time.monotonic() - started)


def _watch(children: list[Child], config: RLConfig, bar: tqdm) -> None:
    """Follow the run until the trainer and the orchestrator finish: the progress bar, report.png, and
    restarts of crashed children."""
    last_step, last_progress, last_report = 0, time.monotonic(), 0.0
    shown: tuple[int, dict[str, str]] = (0, {})
    progress = _Progress(config.output_dir)
    while True:
        step, postfix = progress.poll()
        if step > last_step:
            last_step, last_progress = step, time.monotonic()
            # Plotting costs CPU the three processes need: refresh it now and then, not every step.
            if last_progress - last_report > REPORT_EVERY_S:
                write_report(config.output_dir)
                last_report = time.monotonic()
        elif time.monotonic() - last_progress > STALL_S:
            postfix["waiting"] = stall_reason(config.output_dir)
        if (step, postfix) != shown:  # redrawn once per step (or when what it waits for changes)
            bar.n, shown = step, (step, postfix)
            bar.set_postfix(postfix)
        _supervise(children, config, step)
        if all(c.process.poll() == 0 for c in children[1:]):
            return
        time.sleep(POLL_S)


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
