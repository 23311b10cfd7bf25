"""The monitor: a thread beside the processes of a run that hands what they write to the trackers.

It reads the run dir only, so it works the same whichever process (or node) wrote a line, and a tracker
that fails (W&B unreachable, a full disk) is dropped with a warning rather than stopping the training.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from asyncrl.errors import UserError
from asyncrl.monitor.config import MonitorConfig
from asyncrl.monitor.follow import RunFollower
from asyncrl.monitor.trackers import TensorBoardTracker, Tracker, WandbTracker

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


class Monitor:
    """Follows a run dir every POLL_S seconds on a thread and logs what it finds to the trackers."""

    def __init__(self, run_dir: Path, config: MonitorConfig) -> None:
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

    def _guarded(self, tracker: Tracker, call, *args: object) -> None:  # noqa: ANN001 - any bound method
        if tracker not in self.trackers:
            return
        try:
            call(*args)
        except Exception as e:  # a tracker's failure must not stop the run it watches
            log.warning("dropping the %s tracker after it failed: %s", type(tracker).__name__, e)
            self.trackers.remove(tracker)
