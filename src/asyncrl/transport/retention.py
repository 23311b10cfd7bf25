"""What a run dir keeps: without pruning, every step adds a full weights copy and a batch, and a 7B model
fills a disk in tens of steps. The trainer prunes after each step to what can still be needed."""

from __future__ import annotations

import shutil
from pathlib import Path

from asyncrl.transport.layout import is_stable, rollouts_root, steps, weights_root


def prune_run_dir(run_dir: Path, keep_weights: int, resumable_from: int | None) -> list[Path]:
    """Delete what no process can need any more; the dirs deleted.

    - weights: all but the newest `keep_weights` complete versions (0 keeps every one). The orchestrator
      may still need the policies of its off-policy window (the samples of a batch and their TOPLOC checks),
      and the newest is the run's final weights.
    - rollouts: the batches a resume from step `resumable_from` (the newest checkpoint) would not train
      again, except the newest batch, whose progress record a restarted orchestrator continues from. None
      keeps every batch.
    """
    doomed = []
    if keep_weights:
        doomed += [path for _, path in steps(weights_root(run_dir), is_stable)[:-keep_weights]]
    if resumable_from is not None:
        batches = steps(rollouts_root(run_dir))
        doomed += [path for step, path in batches[:-1] if step <= resumable_from]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
