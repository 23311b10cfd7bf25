"""What every training command sets up and hands out: the model and its optimizers, published weights."""

from __future__ import annotations

import logging
import resource
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from asyncrl.config import ModelConfig
from asyncrl.models import load_model
from asyncrl.trainer.config import TrainerConfig
from asyncrl.trainer.distributed import (
    Ranks,
    apply_activation_checkpointing,
    apply_fsdp,
    full_state_dict,
)
from asyncrl.trainer.lora import add_lora, has_lora, save_adapter
from asyncrl.trainer.optim import build_optimizers
from asyncrl.trainer.policy import check_head, register_sharded
from asyncrl.transport.batches import Batch
from asyncrl.transport.layout import publish_weights

logger = logging.getLogger(__name__)


def publish(
    run_dir: Path, step: int, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, ranks: Ranks
) -> None:
    """weights/step_<step>/ as an HF dir any inference server loads, or with LoRA the adapter dir only
    (the base never changes). Every rank takes part in the gather."""
    lora = has_lora(model)
    state = full_state_dict(model, ranks, trainable_only=lora)
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # the embedding already holds it, as in any HF checkpoint
    if ranks.is_main:

        def save(directory: Path) -> None:
            if lora:
                save_adapter(model, state, directory)
            else:
                model.save_pretrained(directory, state_dict=state)
            tokenizer.save_pretrained(directory)

        publish_weights(run_dir, step, save)


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speed_figures(batch: Batch, step_s: float) -> dict[str, float]:
    """Throughput and memory of a step that took `step_s` seconds over `batch`."""
    tokens = len(batch.input_ids)
    return {"tokens_per_s": tokens / step_s, "step_s": step_s, "peak_memory_mb": peak_memory_mb()}


def build(
    model_config: ModelConfig, config: TrainerConfig, seed: int, ranks: Ranks
) -> tuple[PreTrainedModel, list[torch.optim.Optimizer]]:
    """The model on this rank's device (float32 master weights; FSDP2-sharded when `ranks` say so, with
    `model.dtype` as the compute dtype) and its optimizers, as the config asks."""
    torch.manual_seed(seed)
    model = load_model(model_config.path).to(ranks.device)
    check_head(model)
    if model_config.lora is not None:
        model = add_lora(model, model_config.lora)
    if config.activation_checkpointing:
        apply_activation_checkpointing(model)
    if ranks.sharded:
        apply_fsdp(model, ranks)
        register_sharded(model)
    model.train()
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "training %s on %s x%d in %s (float32 weights and optimizer states), %s: %d parameters trained",
        model_config.path, ranks.device, ranks.world_size, model_config.dtype,
        "a LoRA adapter" if model_config.lora else "every weight", trained,
    )  # fmt: skip
    return model, build_optimizers(model, config.optim)
