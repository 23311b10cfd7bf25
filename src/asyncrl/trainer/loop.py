"""`asyncrl trainer`: read step N's rollouts, take one optimizer step, publish weights/step_N, repeat."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from asyncrl.config import TrainerProcessConfig
from asyncrl.models import load_tokenizer
from asyncrl.run_dir import Sample, append_metrics, load_batch, step_dir, wait_for
from asyncrl.trainer.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from asyncrl.trainer.distributed import init_distributed
from asyncrl.trainer.losses import resolve_loss
from asyncrl.trainer.model_setup import build, peak_memory_mb, publish
from asyncrl.trainer.optim import lr_factor, set_lr
from asyncrl.trainer.packing import loss_token_count, micro_batches_for_rank
from asyncrl.trainer.train_step import accumulate_gradients, optimizer_step

log = logging.getLogger("asyncrl.trainer")


def read_batch(run_dir: Path, step: int, timeout_s: float) -> tuple[list[Sample], float]:
    """Wait for rollouts/step_<step>/ (renamed into place whole by the orchestrator) and load it."""
    path = step_dir(run_dir, "rollouts", step)
    wait_s = wait_for(path, f"the step {step} batch", timeout_s)
    return load_batch(path), wait_s


def train(config: TrainerProcessConfig) -> None:
    ranks = init_distributed()
    cfg, run_dir = config.trainer, config.output_dir
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    model, optimizers = build(config.model, cfg, config.seed, ranks)
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
