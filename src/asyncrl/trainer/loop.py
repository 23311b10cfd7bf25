"""`asyncrl trainer`: read step N's rollouts, take one optimizer step, publish weights/step_N, repeat."""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from asyncrl.config import TrainerProcessConfig
from asyncrl.models import load_model, load_tokenizer
from asyncrl.run_dir import Sample, append_metrics, load_batch, publish_weights, step_dir, wait_for
from asyncrl.trainer.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from asyncrl.trainer.distributed import (
    Ranks,
    apply_activation_checkpointing,
    apply_fsdp,
    full_state_dict,
    init_distributed,
)
from asyncrl.trainer.losses import resolve_loss
from asyncrl.trainer.optim import build_optimizers, lr_factor, set_lr
from asyncrl.trainer.packing import micro_batches_for_rank
from asyncrl.trainer.train_step import accumulate_gradients, optimizer_step

log = logging.getLogger("asyncrl.trainer")


def read_batch(run_dir: Path, step: int, timeout_s: float) -> tuple[list[Sample], float]:
    """Wait for rollouts/step_<step>/ (renamed into place whole by the orchestrator) and load it."""
    path = step_dir(run_dir, "rollouts", step)
    wait_s = wait_for(path, f"the step {step} batch", timeout_s)
    return load_batch(path), wait_s


def loss_token_count(samples: list[Sample]) -> int:
    """Tokens the step trains on (the first token of a sample is never predicted)."""
    return sum(sum(s.loss_mask[1:]) for s in samples)


def publish(
    run_dir: Path, step: int, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, ranks: Ranks
) -> None:
    """weights/step_<step>/ as an HF dir any inference server loads. Every rank takes part in the gather."""
    state = full_state_dict(model, ranks)
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # the embedding already holds it, as in any HF checkpoint
    if ranks.is_main:

        def save(directory: Path) -> None:
            model.save_pretrained(directory, state_dict=state)
            tokenizer.save_pretrained(directory)

        publish_weights(run_dir, step, save)


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(config: TrainerProcessConfig, ranks: Ranks) -> tuple[PreTrainedModel, list[torch.optim.Optimizer]]:
    """The model (sharded when distributed) and its optimizers, as the config asks."""
    torch.manual_seed(config.seed)
    model = load_model(config.model.path).to(ranks.device)
    if config.trainer.activation_checkpointing:
        apply_activation_checkpointing(model)
    if ranks.distributed:
        apply_fsdp(model, ranks)
    model.train()
    return model, build_optimizers(model, config.trainer.optim)


def train(config: TrainerProcessConfig) -> None:
    ranks = init_distributed()
    cfg, run_dir = config.trainer, config.output_dir
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    model, optimizers = build(config, ranks)
    tokenizer = load_tokenizer(config.model.path)
    loss_fn = resolve_loss(cfg.loss)
    step = 0
    if config.resume:
        step = load_checkpoint(find_checkpoint(run_dir, config.resume), model, optimizers, ranks)
        log.info("resumed from the checkpoint of step %d", step)

    progress = tqdm(total=config.max_steps, initial=step, desc="trainer", disable=not ranks.is_main)
    while step < config.max_steps:
        step += 1
        samples, wait_s = read_batch(run_dir, step, cfg.batch_timeout_s)
        start = time.perf_counter()
        lr = cfg.optim.lr * lr_factor(step - 1, cfg.optim, config.max_steps)
        set_lr(optimizers, lr)
        micro_batches = micro_batches_for_rank(samples, cfg.micro_batch_tokens, ranks.rank, ranks.world_size)
        figures = accumulate_gradients(
            model, micro_batches, loss_fn, cfg.loss, loss_token_count(samples), ranks
        )
        grad_norm = optimizer_step(model, optimizers, cfg.optim.max_grad_norm)
        publish(run_dir, step, model, tokenizer, ranks)
        if cfg.checkpoint.interval and step % cfg.checkpoint.interval == 0:
            save_checkpoint(run_dir, step, model, optimizers, ranks, cfg.checkpoint.keep_last)
        step_s = time.perf_counter() - start
        if ranks.is_main:
            tokens = sum(len(s.input_ids) for s in samples)
            figures.update(
                grad_norm=grad_norm,
                lr=lr,
                tokens_per_s=tokens / step_s,
                wait_s=wait_s,
                step_s=step_s,
                peak_memory_mb=peak_memory_mb(),
            )
            append_metrics(run_dir, "trainer", step, figures)
        progress.update(1)
        progress.set_postfix(loss=f"{figures['loss']:.4f}", wait=f"{wait_s:.1f}s")
    progress.close()
