"""LoRA adapter dirs as PEFT writes them (adapter_config.json + adapter_model.safetensors), read without
PEFT: what inference needs to apply one and `asyncrl export` to merge one, W' = W + (alpha / r) B A.

Only plain LoRA on linear layers is read (no DoRA, no adapted biases, no extra saved modules): anything
else is an AdapterError naming the setting, never a silently different model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from asyncrl.errors import UserError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
"""PEFT's prefix on every key of a saved adapter (the PeftModel around the HF model)."""


class AdapterError(UserError):
    """A LoRA adapter dir that cannot be read or applied as asked."""


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


@dataclass
class Adapter:
    scale: float
    """alpha / r (alpha / sqrt(r) with rsLoRA)."""
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    """Each adapted weight's name in the base model (`model.layers.0.self_attn.q_proj.weight`) -> (A, B)."""
    base_model: str | None
    """The base model the adapter was trained on, as its config names it."""


def read_adapter(path: str | Path) -> Adapter:
    directory = Path(path)
    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text())
        tensors = load_file(str(directory / ADAPTER_WEIGHTS))
    except (OSError, json.JSONDecodeError, SafetensorError) as e:
        raise AdapterError(f"{directory} is not a readable LoRA adapter dir: {e}") from None
    unsupported = {"use_dora": True, "fan_in_fan_out": True, "lora_bias": True}
    for key, value in unsupported.items():
        if config.get(key) == value:
            raise AdapterError(
                f"{directory}: adapters with {key} = {value} are not supported; train without it"
            )
    if config.get("modules_to_save"):
        raise AdapterError(
            f"{directory}: adapters that save whole modules (modules_to_save) are not supported"
        )
    rank, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removeprefix(PREFIX).removesuffix(".lora_A.weight")
        b = tensors.get(f"{PREFIX}{module}.lora_B.weight")
        if b is None:
            raise AdapterError(f"{directory}: {module} has a lora_A but no lora_B")
        factors[f"{module}.weight"] = (a, b)
    if not factors:
        raise AdapterError(f"{directory} holds no LoRA factors (lora_A / lora_B weights)")
    return Adapter(scale, factors, config.get("base_model_name_or_path"))


def merged_weights(base: dict[str, torch.Tensor], adapter: Adapter, where: str) -> dict[str, torch.Tensor]:
    """Each adapted weight of `base` with its adapter's product added (in float32, cast back to the
    weight's dtype); an AdapterError when the adapter names a weight `base` lacks or shapes differ."""
    merged = {}
    for name, (a, b) in adapter.factors.items():
        weight = base.get(name)
        if weight is None:
            raise AdapterError(f"{where}: the adapter adapts {name}, which the model does not have")
        if (b.shape[0], a.shape[1]) != tuple(weight.shape) or a.shape[0] != b.shape[1]:
            raise AdapterError(f"{where}: {name} is {tuple(weight.shape)}, the adapter's B A "
                               f"{(b.shape[0], a.shape[1])}: an adapter of another model")  # fmt: skip
        # One fused W + scale * (B @ A), accumulated in float32 whatever the served dtype.
        b32, a32 = (t.to(weight.device, torch.float32) for t in (b, a))
        merged[name] = torch.addmm(weight.to(torch.float32), b32, a32, alpha=adapter.scale).to(weight.dtype)
    return merged
