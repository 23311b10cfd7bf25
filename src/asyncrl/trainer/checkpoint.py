"""Resumable checkpoints: model, optimizer and RNG state via torch.distributed.checkpoint (sharded-safe).

`checkpoints/step_<N>/` is complete once its `trainer_state.json` exists; it is written under a
temporary name and renamed, so a crash mid-save leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from asyncrl.errors import UserError
from asyncrl.trainer.distributed import Ranks, barrier
from asyncrl.transport.layout import checkpoint_dir, checkpoints_root, full_disk_reported, latest_step, steps

STATE_FILE = "trainer_state.json"
DCP_METADATA = ".metadata"
FORMAT_VERSION = 1
log = logging.getLogger("asyncrl.trainer")


class CheckpointError(UserError):
    """A checkpoint to resume from is missing or unreadable."""


def _complete(path: Path) -> bool:
    return (path / STATE_FILE).is_file()


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    ranks: Ranks,
    keep_last: int,
) -> Path:
    """Save everything needed to continue after `step`; every rank must call it."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp")
    if ranks.is_main and tmp.exists():
        shutil.rmtree(tmp)
    barrier(ranks)
    model_state, optim_state = get_state_dict(model, optimizers)
    with full_disk_reported(final):
        dcp.save(
            {"model": model_state, "optim": optim_state},
            checkpoint_id=str(tmp),
            no_dist=not ranks.sharded,
        )
        save_file(_rng_state(ranks), str(tmp / f"rng_rank{ranks.rank}.safetensors"))
    barrier(ranks)
    if ranks.is_main:
        state = {"format_version": FORMAT_VERSION, "step": step, "world_size": ranks.world_size}
        with full_disk_reported(final):
            (tmp / STATE_FILE).write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        _prune(final.parent, keep_last)
    barrier(ranks)
    return final


def _prune(parent: Path, keep_last: int) -> None:
    for _, old in steps(parent, _complete)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(run_dir: Path, which: str) -> Path | None:
    """`latest` or a step number -> that checkpoint's dir, or a CheckpointError saying what exists;
    `if-any`: the newest one, or None when there is none yet."""
    parent = checkpoints_root(run_dir)
    if which in ("latest", "if-any"):
        found = latest_step(parent, _complete)
        if found is None:
            if which == "if-any":
                return None
            raise CheckpointError(
                f"no complete checkpoint under {parent} to resume from; run without --resume to start fresh"
            )
        return found[1]
    if not which.isdigit():
        raise CheckpointError(f"resume must be 'latest', 'if-any' or a step number, not {which!r}")
    path = checkpoint_dir(run_dir, int(which))
    if not _complete(path):
        available = [path.name for _, path in steps(parent, _complete)]
        raise CheckpointError(
            f"no complete checkpoint at {path}; available: {', '.join(available) or 'none'}"
        )
    return path


def _rng_state(ranks: Ranks) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if ranks.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(ranks.device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], ranks: Ranks) -> None:
    torch.set_rng_state(state["cpu"])
    if ranks.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], ranks.device)


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], ranks: Ranks
) -> int:
    """Restore model, optimizers and RNG from `path`; returns the step it was saved after."""
    if not (path / DCP_METADATA).is_file():
        raise CheckpointError(
            f"checkpoint {path} has no {DCP_METADATA}: it is incomplete; resume from another step"
        )
    try:
        state = json.loads((path / STATE_FILE).read_text())
        model_state, optim_state = get_state_dict(model, optimizers)
        loaded = {"model": model_state, "optim": optim_state}
        dcp.load(loaded, checkpoint_id=str(path), no_dist=not ranks.sharded)
        set_state_dict(model, optimizers, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
        rng_file = path / f"rng_rank{ranks.rank}.safetensors"
        if rng_file.exists():
            _set_rng_state(load_file(str(rng_file)), ranks)
    except (Exception, CheckpointException) as e:  # noqa: BLE001 - DCP wraps all its failures
        detail = (str(e).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {detail}); resume from another step"
        ) from None
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {state.get('format_version')}, expected {FORMAT_VERSION}"
        )
    return int(state["step"])


def resume(
    run_dir: Path,
    which: str | None,
    model: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    ranks: Ranks,
) -> int | None:
    """Load the checkpoint `which` names (config.resume) into model and optimizers; the step it was saved
    after, or None when resume is off or `if-any` found none."""
    checkpoint = find_checkpoint(run_dir, which) if which else None
    if checkpoint is None:
        return None
    step = load_checkpoint(checkpoint, model, optimizers, ranks)
    log.info("resumed from the checkpoint of step %d", step)
    return step
