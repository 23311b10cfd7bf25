"""Rollout batches, orchestrator -> trainer: safetensors (no pickle) of flat per-token tensors plus each
sample's length, with the orchestrator's progress beside them in the same atomic write."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from asyncrl.errors import UserError
from asyncrl.transport.layout import rollouts_dir, write_atomically

BATCH_FORMAT = "asyncrl.batch"
BATCH_VERSION = "1"
BATCH_FILE = "batch.safetensors"
PROGRESS_FILE = "progress.json"


class BatchFormatError(UserError):
    """A batch file is not an asyncrl batch of a version this trainer reads."""


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
    routed_experts: torch.Tensor | None = None
    """MoE: [tokens, MoE layers, k] int16, the experts that produced each generated token (-1 elsewhere),
    when the orchestrator recorded them (router replay)."""


@dataclass
class Batch:
    """A step's samples as the trainer reads them: flat per-token tensors, laid sample after sample, and
    per-sample tensors; `sample_lengths` says where each sample's tokens are."""

    input_ids: torch.Tensor
    """[T] int64."""
    loss_mask: torch.Tensor
    """[T] bool: True for tokens the model generated (trained on)."""
    advantages: torch.Tensor
    """[T] float32."""
    inference_logprobs: torch.Tensor
    """[T] float32: the logprob the inference server gave each token (0 where loss_mask is False)."""
    sample_lengths: torch.Tensor
    """[S] int64."""
    policy_versions: torch.Tensor
    """[S] int64."""
    temperatures: torch.Tensor
    """[S] float32."""
    routed_experts: torch.Tensor | None = None
    """[T, MoE layers, k] int16, MoE batches whose routing was recorded: the experts that produced each
    token (-1 where inference chose none: prompts, environment tokens, samples without routing)."""

    PER_TOKEN = ("input_ids", "loss_mask", "advantages", "inference_logprobs")

    @classmethod
    def from_samples(cls, samples: list[Sample]) -> Batch:
        for i, s in enumerate(samples):
            n = len(s.input_ids)
            if not (len(s.loss_mask) == len(s.advantages) == len(s.inference_logprobs) == n):
                raise ValueError(f"sample {i}: per-token lists must all have {n} entries like input_ids")
        return cls(
            input_ids=torch.tensor([t for s in samples for t in s.input_ids], dtype=torch.int64),
            loss_mask=torch.tensor([m for s in samples for m in s.loss_mask], dtype=torch.bool),
            advantages=torch.tensor([a for s in samples for a in s.advantages], dtype=torch.float32),
            inference_logprobs=torch.tensor(
                [lp for s in samples for lp in s.inference_logprobs], dtype=torch.float32
            ),
            sample_lengths=torch.tensor([len(s.input_ids) for s in samples], dtype=torch.int64),
            policy_versions=torch.tensor([s.policy_version for s in samples], dtype=torch.int64),
            temperatures=torch.tensor([s.temperature for s in samples], dtype=torch.float32),
            routed_experts=_routed_experts(samples),
        )

    def __len__(self) -> int:
        return len(self.sample_lengths)

    @property
    def starts(self) -> torch.Tensor:
        """[S] where each sample's tokens begin in the flat tensors."""
        return self.sample_lengths.cumsum(0) - self.sample_lengths

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: tensor for name, tensor in vars(self).items() if tensor is not None}

    def samples(self) -> list[Sample]:
        """The batch as one Sample per rollout (for people and tests; the trainer keeps the tensors)."""
        lengths = self.sample_lengths.tolist()
        split = {k: getattr(self, k).split(lengths) for k in self.PER_TOKEN}
        routed = self.routed_experts.split(lengths) if self.routed_experts is not None else None
        return [
            Sample(
                input_ids=split["input_ids"][i].tolist(),
                loss_mask=split["loss_mask"][i].tolist(),
                advantages=split["advantages"][i].tolist(),
                inference_logprobs=split["inference_logprobs"][i].tolist(),
                policy_version=int(self.policy_versions[i]),
                temperature=float(self.temperatures[i]),
                routed_experts=routed[i] if routed is not None else None,
            )
            for i in range(len(self))
        ]


def _routed_experts(samples: list[Sample]) -> torch.Tensor | None:
    """The samples' routing laid end to end, -1 for samples without any; None when none has routing."""
    shapes = {tuple(s.routed_experts.shape[1:]) for s in samples if s.routed_experts is not None}
    if not shapes:
        return None
    if len(shapes) > 1:
        raise ValueError(f"samples disagree on the routing's [MoE layers, k]: {sorted(shapes)}")
    (shape,) = shapes
    for i, s in enumerate(samples):
        if s.routed_experts is not None and len(s.routed_experts) != len(s.input_ids):
            raise ValueError(f"sample {i}: routed_experts must have {len(s.input_ids)} rows like input_ids")
    return torch.cat(
        [
            s.routed_experts.to(torch.int16)
            if s.routed_experts is not None
            else torch.full((len(s.input_ids), *shape), -1, dtype=torch.int16)
            for s in samples
        ]
    )


def write_batch(
    run_dir: Path, step: int, samples: list[Sample], progress: dict[str, Any] | None = None
) -> Path:
    """Write step `step`'s batch (safetensors: no pickle) atomically to rollouts/step_<step>/, with the
    producer's `progress` (what a restart needs) beside it in the same atomic write."""
    if not samples:
        raise ValueError("a batch needs at least one sample")
    tensors = Batch.from_samples(samples).tensors()
    metadata = {"format": BATCH_FORMAT, "version": BATCH_VERSION, "step": str(step)}

    def fill(directory: Path) -> None:
        save_file(tensors, str(directory / BATCH_FILE), metadata)
        if progress is not None:
            (directory / PROGRESS_FILE).write_text(json.dumps(progress))

    return write_atomically(rollouts_dir(run_dir, step), fill)


def load_progress(batch_dir: Path) -> dict[str, Any]:
    """The progress saved with a batch by write_batch."""
    return json.loads((Path(batch_dir) / PROGRESS_FILE).read_text())


def load_batch(path: Path) -> Batch:
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
    unknown = sorted(set(tensors) - set(Batch.__dataclass_fields__))
    if unknown:
        raise BatchFormatError(
            f"{file} holds tensors this trainer does not know ({', '.join(unknown)}); use the trainer of "
            "the orchestrator's asyncrl version"
        )
    return Batch(**tensors)
