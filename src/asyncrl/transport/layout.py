"""Every path of a run directory, and the atomic writes other processes rely on.

```
config.toml  metrics.jsonl  report.png
monitor/  tensorboard/  wandb/   the trackers' state and stores (asyncrl.monitor)
rollouts/step_<N>/      orchestrator -> trainer batches (renamed into place whole)
weights/step_<N>/       HF dirs, complete once their STABLE marker exists
checkpoints/step_<N>/   resumable trainer state
samples/step_<N>.jsonl  toploc/step_<N>.jsonl  logs/<component>.log  status/<component>.json
```
No module builds one of these paths by hand: they all come from here. No torch: shardcast and the
launcher import this module.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from asyncrl.errors import UserError

log = logging.getLogger("asyncrl.transport")

STABLE = "STABLE"
"""Marker written last into a weights dir: the dir is complete."""
HEARTBEAT_S = 30.0
"""How often a process that waits says what it waits for."""
STEP_PREFIX = "step_"


class WaitTimeout(UserError):
    """Something another process should have written did not appear in time."""


class DiskFullError(UserError):
    """A run file could not be written: its device is full (or over quota)."""

    exit_code = 74  # EX_IOERR: the launcher stops the run rather than restart a child into the same disk

    def __init__(self, path: Path, reason: str = "No space left on device") -> None:
        super().__init__(
            f"no space left on the device of {path} ({reason}): free some, then resume the run "
            "(`asyncrl rl ... --resume true`); nothing half-written is ever read"
        )


@contextmanager
def full_disk_reported(path: Path) -> Iterator[None]:
    """Turn running out of space while writing `path` into a DiskFullError naming it."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFullError(path, e.strerror) from None


def step_path(parent: Path, step: int, suffix: str = "") -> Path:
    """`parent/step_<step><suffix>`: the one spelling of a step's dir or file."""
    return Path(parent) / f"{STEP_PREFIX}{step}{suffix}"


def step_number(path: Path, suffix: str = "") -> int | None:
    """N of a `step_<N><suffix>` path, else None."""
    name = Path(path).name
    if not name.startswith(STEP_PREFIX) or not name.endswith(suffix):
        return None
    number = name[len(STEP_PREFIX) : len(name) - len(suffix)]
    return int(number) if number.isdigit() else None


def steps(parent: Path, complete: Callable[[Path], bool] = lambda _: True) -> list[tuple[int, Path]]:
    """The `step_<N>` dirs under `parent` that `complete` accepts, oldest first."""
    found = []
    for path in Path(parent).glob(f"{STEP_PREFIX}*"):
        number = step_number(path)
        if number is not None and complete(path):
            found.append((number, path))
    return sorted(found)


def latest_step(parent: Path, complete: Callable[[Path], bool] = lambda _: True) -> tuple[int, Path] | None:
    """The `step_<N>` dir under `parent` with the highest N among those `complete` accepts."""
    found = steps(parent, complete)
    return found[-1] if found else None


def is_stable(weights: Path) -> bool:
    return (Path(weights) / STABLE).exists()


def latest_stable(weights_parent: Path) -> tuple[int, Path] | None:
    """The newest complete (STABLE) weights dir under a weights/ dir."""
    return latest_step(weights_parent, is_stable)


# -- the run dir ------------------------------------------------------------------------------------------


def rollouts_root(run_dir: Path) -> Path:
    return Path(run_dir) / "rollouts"


def weights_root(run_dir: Path) -> Path:
    return Path(run_dir) / "weights"


def checkpoints_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def logs_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "logs"


def rollouts_dir(run_dir: Path, step: int) -> Path:
    return step_path(rollouts_root(run_dir), step)


def weights_dir(run_dir: Path, step: int) -> Path:
    return step_path(weights_root(run_dir), step)


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return step_path(checkpoints_root(run_dir), step)


def samples_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "samples"


def samples_file(run_dir: Path, step: int) -> Path:
    return step_path(samples_dir(run_dir), step, ".jsonl")


def proofs_file(run_dir: Path, step: int) -> Path:
    return step_path(Path(run_dir) / "toploc", step, ".jsonl")


def log_file(run_dir: Path, component: str) -> Path:
    return logs_dir(run_dir) / f"{component}.log"


def status_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "status"


def status_file(run_dir: Path, component: str) -> Path:
    return status_dir(run_dir) / f"{component}.json"


def metrics_file(run_dir: Path) -> Path:
    return Path(run_dir) / "metrics.jsonl"


def config_file(run_dir: Path) -> Path:
    """The resolved config of the run, as `asyncrl rl` wrote it."""
    return Path(run_dir) / "config.toml"


def read_config(run_dir: Path) -> dict:
    """The run's config.toml as a table ({} when there is none); TOMLDecodeError when it is not TOML."""
    path = config_file(run_dir)
    return tomllib.loads(path.read_text()) if path.exists() else {}


def monitor_dir(run_dir: Path) -> Path:
    """Where the trackers keep their state (the follower's position, the W&B run id, its lock)."""
    return Path(run_dir) / "monitor"


def tensorboard_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "tensorboard"


def latest_weights(run_dir: Path) -> tuple[int, Path] | None:
    """The newest weights dir of a run whose STABLE marker exists."""
    return latest_stable(weights_root(run_dir))


# -- atomic writes ----------------------------------------------------------------------------------------


def write_atomically(final: Path, fill: Callable[[Path], None]) -> Path:
    """Let `fill` write a directory under a temporary name beside `final`, then rename it into place. A
    `final` already there (a step re-done after a restart) is renamed aside first and deleted after: it is
    missing for the instant between two renames, not for as long as deleting it takes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with full_disk_reported(final):
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        old = tmp.with_name(tmp.name + "-old")
        try:
            fill(tmp)
            if final.exists():
                os.rename(final, old)
            os.rename(tmp, final)
        finally:
            for left in (tmp, old):
                if left.exists():
                    shutil.rmtree(left, ignore_errors=True)
    return final


def write_file_atomically(final: Path, text: str) -> Path:
    """Write `text` to `final` through a temporary file and a rename: readers see the old or the new."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    with full_disk_reported(final):
        try:
            tmp.write_text(text)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    return final


def publish_weights(run_dir: Path, step: int, save: Callable[[Path], None]) -> Path:
    """Write weights/step_<step>/ through `save` (an HF dir), atomically, with STABLE written last."""
    final = write_atomically(weights_dir(run_dir, step), save)
    with full_disk_reported(final):
        (final / STABLE).touch()
    return final


def wait_for(path: Path, what: str, timeout_s: float, poll_s: float = 0.05) -> float:
    """Block until `path` exists; log a heartbeat while waiting; return the seconds waited."""
    start = last_beat = time.monotonic()
    while not path.exists():
        now = time.monotonic()
        if now - start > timeout_s:
            raise WaitTimeout(f"waited {timeout_s:.0f}s for {what} at {path}; is its producer running?")
        if now - last_beat > HEARTBEAT_S:
            log.info("still waiting for %s at %s (%.0fs)", what, path, now - start)
            last_beat = now
        time.sleep(poll_s)
    return time.monotonic() - start
