"""Checking a weights dir against the served model before vLLM loads it, and turning a LoRA adapter dir
into one.

vLLM's engine dies when a reload fails (a missing file, a tensor of another shape), so a bad dir must be
refused before vLLM sees it; the old weights then keep serving. Only the safetensors headers are read.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from asyncrl.adapters import AdapterError, is_adapter_dir, merged_weights, read_adapter
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


class AdapterMerges:
    """LoRA adapter dirs as whole weights dirs vLLM reloads in place, the way it reloads any version (so
    tokens keep exact versions mid-generation): the base (the served model's dir, or the last whole
    version loaded), held in memory, with the adapter merged, written under a scratch dir of which only
    the version serving is kept."""

    def __init__(self, model_dir: Path) -> None:
        self.base_dir = Path(model_dir)
        self._base: dict[str, torch.Tensor] | None = None
        self._scratch = Path(tempfile.mkdtemp(prefix="asyncrl-vllm-merged-"))

    def whole(self, path: str, version: int) -> str:
        """`path` itself for a whole weights dir; for an adapter dir, the merged dir written for it."""
        if not is_adapter_dir(path):
            return path
        try:
            adapter = read_adapter(path)
            if self._base is None:
                self._base = {
                    k: v for f in safetensors_files(self.base_dir) for k, v in load_file(str(f)).items()
                }
            merged = merged_weights(self._base, adapter, path)
        except AdapterError as e:
            raise WeightUpdateError(str(e)) from None
        out = self._scratch / f"v{version}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        save_file({**self._base, **merged}, str(out / "model.safetensors"), metadata={"format": "pt"})
        shutil.copy(self.base_dir / "config.json", out)
        return str(out)

    def serving(self, path: str) -> None:
        """`path` (as `whole` returned it) now serves: a whole dir becomes the base of later adapters, and
        merged dirs of older versions go."""
        if Path(path).parent != self._scratch:
            self.base_dir, self._base = Path(path), None
        for old in self._scratch.iterdir():
            if old != Path(path):
                shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)
