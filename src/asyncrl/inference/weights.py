"""Reading a new policy's weights, checked against the serving model before any swap: an HF dir (every
weight), or a LoRA adapter dir (the adapted weights, merged into the base they adapt)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from asyncrl.adapters import AdapterError, is_adapter_dir, merged_weights, read_adapter
from asyncrl.inference.backend import WeightUpdateError
from asyncrl.moe import fuse_experts


def safetensors_files(path: str | Path) -> list[Path]:
    """The *.safetensors files of a weights dir; WeightUpdateError if there are none."""
    directory = Path(path)
    if not directory.is_dir():
        raise WeightUpdateError(f"weights dir {path} does not exist")
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise WeightUpdateError(f"{path} holds no *.safetensors files")
    return files


def read_weights(path: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Load every tensor of `path`/*.safetensors, cast to the model's dtype, and check that together they
    cover each parameter of `model` with the same shape (MoE experts saved one matrix each are stacked as
    the model holds them). Raises WeightUpdateError otherwise."""
    files = safetensors_files(path)
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            tensors.update(load_file(str(file)))
        except (SafetensorError, OSError) as e:
            raise WeightUpdateError(f"cannot read {file}: {e}") from None
    try:
        tensors = fuse_experts(tensors)
    except ValueError as e:
        raise WeightUpdateError(f"{path}: {e}") from None
    expected = dict(model.named_parameters())
    tied = getattr(model.config, "tie_word_embeddings", False)
    for name, param in expected.items():
        if name not in tensors:
            if tied and name == "lm_head.weight":
                continue
            raise WeightUpdateError(
                f"{path} has no tensor {name!r}: it is not a checkpoint of the served model"
            )
        if tensors[name].shape != param.shape:
            raise WeightUpdateError(
                f"{path}: {name} has shape {tuple(tensors[name].shape)}, the served model "
                f"{tuple(param.shape)}: it is a model of another shape"
            )
    return {name: tensors[name].to(param.dtype) for name, param in expected.items() if name in tensors}


class WeightReader:
    """Reads each new version for one served model. An adapter applies to the base: the weights of the
    last full version loaded (at start, the served model's own), of which the adapted ones are kept as a
    copy, so each version is that base plus its adapter, never plus the adapters before it. Merging costs
    one matrix product per adapted weight at update time and nothing per token."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self._base: dict[str, torch.Tensor] = {}

    def read(self, path: str) -> dict[str, torch.Tensor]:
        if not is_adapter_dir(path):
            tensors = read_weights(path, self.model)
            self._base = {}  # the next adapter applies to these weights
            return tensors
        try:
            adapter = read_adapter(path)
            params = dict(self.model.named_parameters())
            for name in adapter.factors:  # a weight no adapter touched yet still holds the base
                if name not in self._base and name in params:
                    self._base[name] = params[name].detach().clone()
            return merged_weights(self._base, adapter, path)
        except AdapterError as e:
            raise WeightUpdateError(str(e)) from None
