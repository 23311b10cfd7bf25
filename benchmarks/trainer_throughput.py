"""Training tokens/s and peak memory on packed batches: the tiny model and a ~100M-parameter config,
each with and without activation checkpointing, side by side in one run.

Each configuration runs in its own subprocess so its peak memory (max RSS on CPU, max allocated on
CUDA) is its own.

    .venv/bin/python benchmarks/trainer_throughput.py [--steps 3] [--tokens 4096] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from asyncrl.config import ModelConfig
from asyncrl.models import load_tokenizer, tiny_model_dir
from asyncrl.trainer.config import TrainerConfig
from asyncrl.trainer.distributed import Ranks
from asyncrl.trainer.losses import masked_is
from asyncrl.trainer.model_setup import build, peak_memory_mb
from asyncrl.trainer.train_step import train_on_batch
from asyncrl.transport.batches import Batch, Sample

MODELS = {
    "tiny": None,
    "100M": {
        "hidden_size": 768,
        "intermediate_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 12,
        "num_key_value_heads": 4,
    },
}


def make_model_dir(name: str, out: str) -> str:
    if MODELS[name] is None:
        return str(tiny_model_dir())
    config = Qwen2Config(
        vocab_size=272, max_position_embeddings=4096, tie_word_embeddings=True, **MODELS[name]
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    load_tokenizer("tiny").save_pretrained(out)
    return out


def make_batch(tokens: int, seed: int) -> Batch:
    """RL-like samples (prompt 32-128 tokens, completion 32-384) until `tokens` tokens."""
    rng = random.Random(seed)
    samples, total = [], 0
    while total < tokens:
        prompt, completion = rng.randint(32, 128), rng.randint(32, 384)
        n = min(prompt + completion, tokens - total)
        ids = [rng.randrange(256) for _ in range(n)]
        mask = [i >= prompt for i in range(n)]
        samples.append(Sample(ids, mask, [rng.choice([-1.0, 1.0])] * n, [-5.5] * n, 0))
        total += n
    return Batch.from_samples(samples)


def run_one(
    model: str, checkpointing: bool, steps: int, tokens: int, micro: int, row: int
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_model_dir(model, tmp)
        config = TrainerConfig(
            activation_checkpointing=checkpointing, micro_batch_tokens=micro, row_tokens=row
        )
        ranks = Ranks(0, 1, torch.device("cpu"))
        net, optimizers = build(ModelConfig(path=path), config, 0, ranks)
        params = sum(p.numel() for p in net.parameters())
        train_on_batch(
            net, optimizers, make_batch(tokens, 0), masked_is, config, 1, steps + 1, ranks
        )  # warm-up
        start = time.perf_counter()
        for step in range(steps):
            train_on_batch(
                net, optimizers, make_batch(tokens, step + 1), masked_is, config, step + 2, steps + 1, ranks
            )
        elapsed = time.perf_counter() - start
    return {"params_m": params / 1e6, "tokens_per_s": steps * tokens / elapsed, "peak_mb": peak_memory_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per optimizer step")
    parser.add_argument("--micro-batch-tokens", type=int, default=TrainerConfig().micro_batch_tokens)
    parser.add_argument("--row-tokens", type=int, default=TrainerConfig().row_tokens)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        model, checkpointing = args.one.split(":")
        result = run_one(
            model, checkpointing == "ac", args.steps, args.tokens, args.micro_batch_tokens, args.row_tokens
        )
        print(json.dumps(result))
        return
    print(
        f"{args.tokens} tokens per step in micro-batches of {args.micro_batch_tokens} (rows of "
        f"{args.row_tokens}), "
        f"{args.steps} timed steps, {args.threads} threads"
    )
    print(f"{'model':<8}{'params':>9}{'act. ckpt':>11}{'tokens/s':>11}{'peak MB':>10}")
    for model in MODELS:
        for mode in ("off", "ac"):
            command = [
                sys.executable,
                __file__,
                "--one",
                f"{model}:{mode}",
                "--steps",
                str(args.steps),
                "--tokens",
                str(args.tokens),
                "--micro-batch-tokens",
                str(args.micro_batch_tokens),
                "--row-tokens",
                str(args.row_tokens),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"{model:<8}{r['params_m']:>8.1f}M{mode:>11}{r['tokens_per_s']:>11.0f}{r['peak_mb']:>10.0f}"
            )


if __name__ == "__main__":
    main()
