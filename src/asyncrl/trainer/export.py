"""`asyncrl export ADAPTER --out DIR`: a LoRA adapter dir merged into its base, as a whole HF model dir,
for serving or deploying merged weights anywhere (the same merge the torch engine applies)."""

from __future__ import annotations

import torch

from asyncrl.adapters import AdapterError, is_adapter_dir, merged_weights, read_adapter
from asyncrl.models import load_model, load_tokenizer
from asyncrl.trainer.config import ExportConfig


def export_merged(config: ExportConfig) -> None:
    if config.adapter is None or not is_adapter_dir(config.adapter):
        raise AdapterError(f"{config.adapter} is not a LoRA adapter dir (no adapter_config.json in it)")
    adapter = read_adapter(config.adapter)
    base = config.base or adapter.base_model
    if base is None:
        raise AdapterError(f"{config.adapter}'s config names no base model: give it with --base PATH")
    model = load_model(base)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in merged_weights(params, adapter, config.adapter).items():
            params[name].copy_(tensor)
    model.save_pretrained(config.out)
    load_tokenizer(base).save_pretrained(config.out)
    print(f"asyncrl export: {config.adapter} merged into {base}: {config.out}")
