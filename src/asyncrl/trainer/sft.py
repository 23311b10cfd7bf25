"""`asyncrl sft`: cross-entropy on completions, then weights in the HF layout an RL run starts from."""

from __future__ import annotations

import logging
import math
import random
import time

import torch

from asyncrl.models import load_tokenizer
from asyncrl.progress import progress_bar
from asyncrl.trainer.checkpoint import resume, save_checkpoint
from asyncrl.trainer.config import SFTProcessConfig, TrainerConfig
from asyncrl.trainer.distributed import Ranks, all_reduce_sum, init_distributed
from asyncrl.trainer.losses import sft as sft_loss
from asyncrl.trainer.model_setup import build, publish, speed_figures
from asyncrl.trainer.packing import micro_batches_for_rank
from asyncrl.trainer.policy import forward_logprobs
from asyncrl.trainer.sft_data import SFTDataError, read_records, split_train_eval, tokenize
from asyncrl.trainer.train_step import train_on_batch
from asyncrl.transport.batches import Batch, Sample
from asyncrl.transport.layout import weights_dir
from asyncrl.transport.metrics import append_metrics

log = logging.getLogger("asyncrl.sft")
RL_ONLY = ("mismatch_kl", "masked_frac")


def step_samples(train: list[Sample], step: int, batch_size: int, seed: int) -> list[Sample]:
    """The samples of optimizer step `step` (1-based): epochs are seeded shuffles, so a resumed run
    sees exactly the batches an uninterrupted one would."""
    per_epoch = math.ceil(len(train) / batch_size)
    epoch, index = divmod(step - 1, per_epoch)
    order = list(range(len(train)))
    random.Random(seed + epoch).shuffle(order)
    return [train[i] for i in order[index * batch_size : (index + 1) * batch_size]]


@torch.no_grad()
def eval_loss(model: torch.nn.Module, samples: list[Sample], config: TrainerConfig, ranks: Ranks) -> float:
    """Mean cross-entropy per loss token over `samples`, across ranks."""
    totals = torch.zeros(2, dtype=torch.float64, device=ranks.device)
    packed = micro_batches_for_rank(
        Batch.from_samples(samples),
        config.row_tokens,
        config.micro_batch_tokens,
        ranks.rank,
        ranks.world_size,
    )
    for mb in packed:
        mb = mb.to(ranks.device)
        logprobs, _ = forward_logprobs(model, mb)
        totals += torch.stack([-(logprobs * mb.loss_mask).sum(), mb.loss_mask.sum()]).double()
    loss_sum, tokens = all_reduce_sum(totals, ranks).tolist()
    return loss_sum / max(1.0, tokens)


def run_sft(config: SFTProcessConfig) -> None:
    ranks = init_distributed(config.trainer.device, config.model.dtype)
    cfg, data, run_dir = config.trainer, config.sft, config.output_dir
    if data.data is None:
        raise SFTDataError("no training data: pass --sft.data FILE.jsonl")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    tokenizer = load_tokenizer(config.model.path)
    samples = [tokenize(r, tokenizer) for r in read_records(data.data)]
    if data.eval_data is not None:
        train, evals = samples, [tokenize(r, tokenizer) for r in read_records(data.eval_data)]
    else:
        train, evals = split_train_eval(samples, data.eval_fraction, config.seed)
    total_steps = data.max_steps or data.epochs * math.ceil(len(train) / data.batch_size)
    model, optimizers = build(config.model, cfg, config.seed, ranks)
    resumed = resume(run_dir, config.resume, model, optimizers, ranks)
    step = resumed or 0
    if resumed is None and evals:
        initial = eval_loss(model, evals, cfg, ranks)
        if ranks.is_main:
            append_metrics(run_dir, "sft", 0, {"eval_loss": initial})

    progress = progress_bar(total_steps, "sft", step, "step", disable=not ranks.is_main)
    while step < total_steps:
        step += 1
        start = time.perf_counter()
        batch = Batch.from_samples(step_samples(train, step, data.batch_size, config.seed))
        figures = train_on_batch(model, optimizers, batch, sft_loss, cfg, step, total_steps, ranks)
        if evals and (step % data.eval_interval == 0 or step == total_steps):
            figures["eval_loss"] = eval_loss(model, evals, cfg, ranks)
        if ranks.is_main:
            figures.update(speed_figures(batch, time.perf_counter() - start))
            append_metrics(run_dir, "sft", step, {k: v for k, v in figures.items() if k not in RL_ONLY})
        if cfg.checkpoint.interval and step % cfg.checkpoint.interval == 0:
            save_checkpoint(run_dir, step, model, optimizers, ranks, cfg.checkpoint.keep_last)
        progress.update(1)
        progress.set_postfix(loss=f"{figures['loss']:.4f}")
    progress.close()
    publish(run_dir, total_steps, model, tokenizer, ranks)
    log.info("SFT done: weights in %s", weights_dir(run_dir, total_steps))
