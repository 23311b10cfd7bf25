"""The run directory as the transport between processes: batches, weights and metrics.

Everything another process reads appears atomically: a directory is written under a temporary name and
renamed into place, and a weights dir is only complete once its `STABLE` marker exists. Keeping these
few functions the only file I/O between orchestrator, trainer and inference lets another transport
replace them later.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from asyncrl.errors import UserError

log = logging.getLogger("asyncrl.run_dir")

BATCH_FORMAT = "asyncrl.batch"
BATCH_VERSION = "1"
BATCH_FILE = "batch.safetensors"
PROGRESS_FILE = "progress.json"
STABLE = "STABLE"
HEARTBEAT_S = 30.0


class BatchFormatError(UserError):
    """A batch file is not an asyncrl batch of a version this trainer reads."""


class WaitTimeout(UserError):
    """Something another process should have written did not appear in time."""


@dataclass
class Sample:
    """One rollout as the trainer sees it; every per-token list has the length of `input_ids`."""

    input_ids: list[int]
    loss_mask: list[bool]
    """True for tokens the model generated (trained on); prompt and environment tokens are False."""
    advantages: list[float]
    inference_logprobs: list[float]
    """Logprob the inference server gave each token (0 where loss_mask is False)."""
    policy_version: int
    """Weights version that generated the sample (the oldest, when an update landed mid-rollout)."""
    temperature: float = 1.0
    """Sampling temperature; the trainer divides its logits by it."""


def step_dir(run_dir: Path, kind: str, step: int) -> Path:
    return Path(run_dir) / kind / f"step_{step}"


def write_atomically(final: Path, fill: Callable[[Path], None]) -> Path:
    """Let `fill` write a directory under a temporary name beside `final`, then rename it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        fill(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# -- rollout batches: orchestrator -> trainer --------------------------------------------------------------


def write_batch(
    run_dir: Path, step: int, samples: list[Sample], progress: dict[str, Any] | None = None
) -> Path:
    """Write step `step`'s batch (safetensors: no pickle) atomically to rollouts/step_<step>/, with the
    producer's `progress` (what a restart needs) beside it in the same atomic write."""
    if not samples:
        raise ValueError("a batch needs at least one sample")
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        if not (len(s.loss_mask) == len(s.advantages) == len(s.inference_logprobs) == n):
            raise ValueError(f"sample {i}: per-token lists must all have {n} entries like input_ids")
    tensors = {
        "input_ids": torch.tensor([t for s in samples for t in s.input_ids], dtype=torch.int64),
        "loss_mask": torch.tensor([m for s in samples for m in s.loss_mask], dtype=torch.bool),
        "advantages": torch.tensor([a for s in samples for a in s.advantages], dtype=torch.float32),
        "inference_logprobs": torch.tensor(
            [lp for s in samples for lp in s.inference_logprobs], dtype=torch.float32
        ),
        "sample_lengths": torch.tensor([len(s.input_ids) for s in samples], dtype=torch.int64),
        "policy_versions": torch.tensor([s.policy_version for s in samples], dtype=torch.int64),
        "temperatures": torch.tensor([s.temperature for s in samples], dtype=torch.float32),
    }
    metadata = {"format": BATCH_FORMAT, "version": BATCH_VERSION, "step": str(step)}

    def fill(directory: Path) -> None:
        save_file(tensors, str(directory / BATCH_FILE), metadata)
        if progress is not None:
            (directory / PROGRESS_FILE).write_text(json.dumps(progress))

    return write_atomically(step_dir(run_dir, "rollouts", step), fill)


def load_progress(batch_dir: Path) -> dict[str, Any]:
    """The progress saved with a batch by write_batch."""
    return json.loads((Path(batch_dir) / PROGRESS_FILE).read_text())


def load_batch(path: Path) -> list[Sample]:
    """Read a batch dir written by write_batch."""
    file = Path(path) / BATCH_FILE
    try:
        with safe_open(str(file), "pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(file))
    except (OSError, ValueError, SafetensorError) as e:
        raise BatchFormatError(f"{file} is not a readable batch: {e}") from None
    if metadata.get("format") != BATCH_FORMAT or metadata.get("version") != BATCH_VERSION:
        raise BatchFormatError(
            f"{file} is {metadata.get('format')!r} v{metadata.get('version')}, this trainer reads "
            f"{BATCH_FORMAT} v{BATCH_VERSION}; use the orchestrator of the same asyncrl version"
        )
    per_token = {
        k: tensors[k].split(tensors["sample_lengths"].tolist())
        for k in ("input_ids", "loss_mask", "advantages", "inference_logprobs")
    }
    return [
        Sample(
            input_ids=per_token["input_ids"][i].tolist(),
            loss_mask=per_token["loss_mask"][i].tolist(),
            advantages=per_token["advantages"][i].tolist(),
            inference_logprobs=per_token["inference_logprobs"][i].tolist(),
            policy_version=int(tensors["policy_versions"][i]),
            temperature=float(tensors["temperatures"][i]),
        )
        for i in range(len(tensors["sample_lengths"]))
    ]


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


# -- weights: trainer -> inference -------------------------------------------------------------------------


def publish_weights(run_dir: Path, step: int, save: Callable[[Path], None]) -> Path:
    """Write weights/step_<step>/ through `save` (an HF dir), atomically, with STABLE written last."""
    final = write_atomically(step_dir(run_dir, "weights", step), save)
    (final / STABLE).touch()
    return final


def latest_weights(run_dir: Path) -> tuple[int, Path] | None:
    """The newest weights dir whose STABLE marker exists."""
    return latest_step_dir(Path(run_dir) / "weights", lambda d: (d / STABLE).exists())


def latest_step_dir(parent: Path, complete: Callable[[Path], bool]) -> tuple[int, Path] | None:
    """The `step_<N>` dir under `parent` with the highest N among those `complete` accepts."""
    found = []
    for path in Path(parent).glob("step_*"):
        number = path.name.removeprefix("step_")
        if number.isdigit() and complete(path):
            found.append((int(number), path))
    return max(found) if found else None


# -- metrics -------------------------------------------------------------------------------------------


def append_metrics(run_dir: Path, component: str, step: int, figures: dict[str, Any]) -> None:
    """Append one line {"step", "component", ...figures} to metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"step": step, "component": component, **figures}) + "\n"
    with open(path, "a") as f:
        f.write(line)


def read_metrics(run_dir: Path, component: str | None = None) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if component is None or r["component"] == component]
