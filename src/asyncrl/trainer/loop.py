"""`asyncrl trainer`: read step N's rollouts, take one optimizer step, publish weights/step_N, repeat."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from asyncrl.errors import UserError
from asyncrl.models import load_tokenizer
from asyncrl.moe import RouterReplay, check_routing, moe_shape
from asyncrl.progress import progress_bar
from asyncrl.trainer.checkpoint import resume, save_checkpoint
from asyncrl.trainer.config import TrainerConfig, TrainerProcessConfig
from asyncrl.trainer.distributed import init_distributed
from asyncrl.trainer.losses import resolve_loss
from asyncrl.trainer.model_setup import build, publish, speed_figures
from asyncrl.trainer.train_step import train_on_batch
from asyncrl.transport.batches import Batch, load_batch
from asyncrl.transport.layout import rollouts_dir, wait_for
from asyncrl.transport.metrics import append_metrics
from asyncrl.transport.retention import prune_run_dir
from asyncrl.transport.status import StatusFile


def read_batch(run_dir: Path, step: int, timeout_s: float, status: StatusFile) -> tuple[Batch, float, float]:
    """Wait for rollouts/step_<step>/ (renamed into place whole by the orchestrator) and load it; returns
    it with the seconds spent waiting and reading."""
    path = rollouts_dir(run_dir, step)
    status.waiting(f"the step {step} batch")
    wait_s = wait_for(path, f"the step {step} batch", timeout_s)
    status.working()
    start = time.perf_counter()
    return load_batch(path), wait_s, time.perf_counter() - start


def prune(run_dir: Path, step: int, cfg: TrainerConfig) -> None:
    """Delete the weights and batches no process can need after `step` (asyncrl.transport.retention)."""
    interval = cfg.checkpoint.interval
    newest_checkpoint = step // interval * interval if interval else step
    prune_run_dir(
        run_dir, cfg.retention.weights, newest_checkpoint if cfg.retention.rollouts == "needed" else None
    )


class BatchRoutingError(UserError):
    """A batch's recorded routing is missing where router replay needs it, or not this model's."""


def check_batch_routing(batch: Batch, step: int, model: torch.nn.Module, cfg: TrainerConfig) -> None:
    if batch.routed_experts is None:
        if cfg.router_replay:
            raise BatchRoutingError(
                f"trainer.router_replay is on but the step {step} batch has no routed experts: the "
                "orchestrator records them with orchestrator.record_routing = true, from the torch engine "
                "and asyncrl's own environments"
            )
        return
    shape = moe_shape(model)
    if shape is None:
        return  # a dense model's trainer ignores routing it has no routers for
    try:
        check_routing(batch.routed_experts, shape)
    except ValueError as e:
        raise BatchRoutingError(f"the step {step} batch: {e}") from None


def router_replay(model: torch.nn.Module, cfg: TrainerConfig) -> RouterReplay | None:
    """The routing hooks of an MoE model (replaying when trainer.router_replay; measuring always), None
    for a dense one; router replay on a dense model is a config error."""
    if moe_shape(model) is None:
        if cfg.router_replay or cfg.moe_balance_loss_coef:
            raise UserError(
                "trainer.router_replay and trainer.moe_balance_loss_coef need an MoE model; this one is dense"
            )
        return None
    return RouterReplay(model, apply=cfg.router_replay, balance=cfg.moe_balance_loss_coef > 0)


def train(config: TrainerProcessConfig) -> None:
    # INFO: what the trainer waits for ("still waiting for the step N batch"), or it looks hung.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ranks = init_distributed(config.trainer.device, config.model.dtype)
    cfg, run_dir = config.trainer, config.output_dir
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    model, optimizers = build(config.model, cfg, config.seed, ranks)
    tokenizer = load_tokenizer(config.model.path)
    loss_fn = resolve_loss(cfg.loss)
    step = resume(run_dir, config.resume, model, optimizers, ranks) or 0
    routing = router_replay(model, cfg)

    status = StatusFile(run_dir, "trainer" if ranks.is_main else f"trainer-rank{ranks.rank}")
    progress = progress_bar(config.max_steps, "trainer", step, "step", disable=not ranks.is_main)
    checkpoint_s = 0.0
    while step < config.max_steps:
        step += 1
        batch, wait_s, read_s = read_batch(run_dir, step, cfg.batch_timeout_s, status)
        start = time.perf_counter()
        check_batch_routing(batch, step, model, cfg)
        figures = train_on_batch(
            model, optimizers, batch, loss_fn, cfg, step, config.max_steps, ranks, routing
        )
        trained = time.perf_counter()
        publish(run_dir, step, model, tokenizer, ranks)
        done = time.perf_counter()
        if ranks.is_main:  # before the checkpoint: a step whose checkpoint exists has its metrics
            figures.update(wait_s=wait_s, read_s=read_s, publish_s=done - trained, checkpoint_s=checkpoint_s,
                           **speed_figures(batch, done - start))  # fmt: skip
            append_metrics(run_dir, "trainer", step, figures)
        saved = time.perf_counter()
        if cfg.checkpoint.interval and step % cfg.checkpoint.interval == 0:
            save_checkpoint(run_dir, step, model, optimizers, ranks, cfg.checkpoint.keep_last)
        if ranks.is_main:
            prune(run_dir, step, cfg)
        checkpoint_s = time.perf_counter() - saved  # goes into the next step's line, written before it
        progress.update(1)
        progress.set_postfix(loss=f"{figures['loss']:.4f}", wait=f"{wait_s:.1f}s")
    progress.close()
