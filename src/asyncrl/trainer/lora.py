"""LoRA in the trainer: PEFT's adapters injected into the HF model, the base frozen, adapters published.

The trainer goes on calling the HF model itself (PEFT's LoRA layers sit inside it, in place of the linear
layers they adapt), so packing, chunked logprobs, FSDP2 and checkpoints see one more set of parameters
and nothing else: only those require gradients, so only they get optimizer state.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PreTrainedModel

from asyncrl.adapters import ADAPTER_WEIGHTS, PREFIX
from asyncrl.config import LoraConfig
from asyncrl.errors import UserError
from asyncrl.moe import moe_shape

ADAPTER = "default"
"""The name PEFT gives the one adapter; it appears in parameter names, never in saved files."""


def add_lora(model: PreTrainedModel, config: LoraConfig) -> PreTrainedModel:
    """`model` with LoRA adapters (B = 0: the model's outputs are unchanged until it trains) and every
    other parameter frozen."""
    if moe_shape(model) is not None:
        # PEFT adapts the routers and the 3-D expert stacks in layouts the servers' adapter merge does
        # not read: an adapter the trainer could save but no server could apply.
        raise UserError(
            f"LoRA on MoE models ({model.config.model_type}) is not supported yet; train every weight "
            "(leave [model.lora] out)"
        )
    import peft  # the optional `lora` extra: only LoRA runs need it

    settings = peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )  # the adapter config names the base by the model's own path (base_model_name_or_path)
    return peft.get_peft_model(model, settings).base_model.model


def has_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def adapter_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter's tensors of a model state dict, under the names PEFT saves them by."""
    marker = f".{ADAPTER}."
    return {PREFIX + k.replace(marker, "."): v for k, v in state.items() if ".lora_" in k and marker in k}


def save_adapter(model: torch.nn.Module, state: dict[str, torch.Tensor], directory: Path) -> None:
    """A PEFT adapter dir (adapter_config.json, adapter_model.safetensors) from the adapter's tensors."""
    model.peft_config[ADAPTER].save_pretrained(str(directory))
    tensors = {k: v.contiguous() for k, v in adapter_state(state).items()}
    save_file(tensors, str(Path(directory) / ADAPTER_WEIGHTS), metadata={"format": "pt"})
