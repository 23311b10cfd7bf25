"""Checking a weights dir against the served model before vLLM loads it.

vLLM's engine dies when a reload fails (a missing file, a tensor of another shape), so a bad dir must be
refused before vLLM sees it; the old weights then keep serving. Only the safetensors headers are read.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError, safe_open

from asyncrl.adapters import is_adapter_dir
from asyncrl.inference.backend import WeightUpdateError
from asyncrl.inference.weights import safetensors_files

TIED_HEAD = "lm_head.weight"
"""Absent from checkpoints of models with tied embeddings; present or not, both load."""


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the dir's *.safetensors files."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in safetensors_files(path):
        try:
            with safe_open(str(file), framework="numpy") as tensors:
                for name in tensors.keys():  # noqa: SIM118 - safe_open is not a mapping
                    shapes[name] = tuple(tensors.get_slice(name).get_shape())
        except (SafetensorError, OSError) as e:
            raise WeightUpdateError(f"cannot read {file}: {e}") from None
    return shapes


def check_same_model(path: str | Path, served: dict[str, tuple[int, ...]]) -> None:
    """Raise WeightUpdateError unless `path` holds exactly the served model's tensors, shape for shape."""
    if is_adapter_dir(path):
        raise WeightUpdateError(
            f"{path} is a LoRA adapter dir: the vLLM backend loads whole weights only; serve LoRA runs with "
            "inference.backend = 'torch', or merge the adapter first (asyncrl export)"
        )
    new = tensor_shapes(path)
    for name, shape in served.items():
        if name not in new:
            raise WeightUpdateError(
                f"{path} has no tensor {name!r}: it is not a checkpoint of the served model"
            )
        if new[name] != shape:
            raise WeightUpdateError(
                f"{path}: {name} has shape {new[name]}, the served model {shape}: "
                "it is a model of another shape"
            )
    unknown = sorted(set(new) - set(served) - {TIED_HEAD})
    if unknown:
        raise WeightUpdateError(
            f"{path} has tensors the served model lacks ({', '.join(unknown[:3])}): it is another model"
        )
