"""The monitor: a thread beside the processes of a run that hands what they write to the trackers.

It reads the run dir only, so it works the same whichever process (or node) wrote a line, and a tracker
that fails (W&B unreachable, a full disk) is dropped with a warning rather than stopping the training.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from asyncrl.errors import UserError
from asyncrl.monitor.config import MonitorCommandConfig, MonitorConfig
from asyncrl.monitor.follow import RunFollower
from asyncrl.monitor.trackers import TensorBoardTracker, Tracker, WandbTracker
from asyncrl.transport.layout import monitor_dir, read_config
from asyncrl.transport.metrics import read_metrics

log = logging.getLogger("asyncrl.monitor")

POLL_S = 2.0


class TrackerUnavailable(UserError):
    """A configured tracker's package is missing."""


def open_trackers(run_dir: Path, config: MonitorConfig) -> list[Tracker]:
    kinds = [(config.wandb, WandbTracker, "wandb"), (config.tensorboard, TensorBoardTracker, "tensorboard")]
    trackers = []
    for wanted, kind, package in kinds:
        if not wanted:
            continue
        try:
            trackers.append(kind(run_dir, config))
        except ImportError as e:
            raise TrackerUnavailable(
                f"monitor.{package} needs the {package} package ({e}): pip install 'asyncrl[monitor]'"
            ) from None
    return trackers


class AlreadyMonitored(UserError):
    """Another process already logs this run dir to its trackers."""


def _lock(run_dir: Path) -> int:
    """Hold the run dir's monitor lock until this process exits: two followers would log every line twice
    into one tracker run."""
    path = monitor_dir(run_dir) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode().strip() or "?"
        os.close(fd)
        raise AlreadyMonitored(
            f"process {holder} already logs {run_dir} to its trackers (an `asyncrl rl` or `asyncrl monitor` "
            "on it): stop it first, or leave the trackers to it"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class Monitor:
    """Follows a run dir every POLL_S seconds on a thread and logs what it finds to the trackers."""

    def __init__(self, run_dir: Path, config: MonitorConfig) -> None:
        self._lock = _lock(run_dir)
        self.follower = RunFollower(run_dir, config.samples_every)
        self.trackers = open_trackers(run_dir, config)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asyncrl-monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # what the processes wrote last
        for tracker in self.trackers:
            self._guarded(tracker, tracker.close)
        os.close(self._lock)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.poll()
            except Exception as e:  # the run dir unreadable for a moment: the next poll tries again
                log.warning("could not read the run dir for the trackers: %s", e)

    def poll(self) -> None:
        news = self.follower.poll()
        for tracker in list(self.trackers):
            for record in news.metrics:
                self._guarded(tracker, tracker.log_metrics, record)
            for step, records in news.samples:
                self._guarded(tracker, tracker.log_samples, step, records)

    def _guarded(self, tracker: Tracker, call: Callable[..., None], *args: object) -> None:
        if tracker not in self.trackers:
            return
        try:
            call(*args)
        except Exception as e:  # a tracker's failure must not stop the run it watches
            log.warning("dropping the %s tracker after it failed: %s", type(tracker).__name__, e)
            self.trackers.remove(tracker)


def run_finished(run_dir: Path) -> bool:
    """Whether the trainer has logged the run's last step (max_steps of its config.toml)."""
    max_steps = read_config(run_dir).get("max_steps")
    trainer = read_metrics(run_dir, "trainer")
    return max_steps is not None and bool(trainer) and trainer[-1]["step"] >= max_steps


def follow_run(config: MonitorCommandConfig) -> None:
    """`asyncrl monitor RUN_DIR`: log a run whose processes were started one by one (on several nodes) to
    the trackers, until its last step or Ctrl-C."""
    if config.run_dir is None or not Path(config.run_dir).is_dir():
        raise UserError(f"{config.run_dir} is not a directory: give the output_dir of the run to follow")
    if not config.monitor.any:
        raise UserError("no tracker is on: add --monitor.wandb true and/or --monitor.tensorboard true")
    with Monitor(config.run_dir, config.monitor):
        print(f"asyncrl monitor: following {config.run_dir} until its last step (Ctrl-C stops)", flush=True)
        while not run_finished(config.run_dir):
            time.sleep(POLL_S)
