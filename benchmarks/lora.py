"""Full fine-tuning against a LoRA adapter on the same job, side by side in one run, for the tiny model
and a ~100M-parameter one: trainer tokens/s and peak memory, optimizer-state bytes, bytes published per
step, and the inference server's weight-update latency for what was published (its first update, and
the steady state after it).

Each configuration runs in its own subprocess (its peak memory, max RSS on CPU, is its own): it trains
on RL-like packed batches, publishes weights/step_N as a run would (a whole HF dir, or the adapter dir),
and has a server on the base model load it through /update_weights.

    .venv/bin/python benchmarks/lora.py [--steps 2] [--tokens 2048] [--rank 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from trainer_throughput import MODELS, make_batch, make_model_dir  # benchmarks/, first on the path

from asyncrl.config import LoraConfig, ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess
from asyncrl.models import load_tokenizer
from asyncrl.trainer.config import TrainerConfig
from asyncrl.trainer.distributed import Ranks
from asyncrl.trainer.losses import masked_is
from asyncrl.trainer.model_setup import build, peak_memory_mb, publish
from asyncrl.trainer.train_step import train_on_batch
from asyncrl.transport.layout import weights_dir

SIZE_OF_WEIGHTS = ("*.safetensors",)
UPDATES = 3
"""Weight updates timed per server: the first, and the median of the others (the steady state)."""


def optimizer_state_bytes(optimizers: list[torch.optim.Optimizer]) -> int:
    return sum(t.numel() * t.element_size() for o in optimizers for s in o.state.values()
               for t in s.values() if torch.is_tensor(t))  # fmt: skip


def run_one(path: str, rank: int, steps: int, tokens: int, threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        lora = LoraConfig(rank=rank, alpha=2 * rank) if rank else None
        config = TrainerConfig(micro_batch_tokens=2048)
        ranks = Ranks(0, 1, torch.device("cpu"))
        net, optimizers = build(ModelConfig(path=path, lora=lora), config, 0, ranks)
        trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
        train_on_batch(
            net, optimizers, make_batch(tokens, 0), masked_is, config, 1, steps + 1, ranks
        )  # warm-up
        start = time.perf_counter()
        for step in range(steps):
            batch = make_batch(tokens, step + 1)
            train_on_batch(net, optimizers, batch, masked_is, config, step + 2, steps + 1, ranks)
        train_s = time.perf_counter() - start
        run_dir = Path(tmp) / "run"
        started = time.perf_counter()
        publish(run_dir, 1, net, load_tokenizer(path), ranks)
        publish_s = time.perf_counter() - started
        published = weights_dir(run_dir, 1)
        size = sum(f.stat().st_size for pattern in SIZE_OF_WEIGHTS for f in published.glob(pattern))
        peak = peak_memory_mb()
        server_config = InferenceConfig(port=0, num_threads=threads)
        with InferenceServerProcess(
            ModelConfig(path=path), server_config, 0, Path(tmp) / "server.log"
        ) as server:
            # The first update of a server pays once (an adapter: the copy of the base it merges into).
            seconds = [
                httpx.post(f"{server.url}/update_weights", json={"path": str(published), "version": v},
                           timeout=600).json()["seconds"]
                for v in range(1, UPDATES + 1)
            ]  # fmt: skip
    return {"params_m": sum(p.numel() for p in net.parameters()) / 1e6, "trained_m": trained / 1e6,
            "tokens_per_s": steps * tokens / train_s, "peak_mb": peak,
            "optim_mb": optimizer_state_bytes(optimizers) / 2**20, "published_mb": size / 2**20,
            "publish_s": publish_s, "first_update_s": seconds[0],
            "update_s": statistics.median(seconds[1:])}  # fmt: skip


COLUMNS = [("params_m", "params M", ".1f"), ("trained_m", "trained M", ".3f"),
           ("tokens_per_s", "tokens/s", ".0f"), ("peak_mb", "peak MB", ".0f"),
           ("optim_mb", "optim MB", ".3f"),
           ("published_mb", "publish MB", ".3f"), ("publish_s", "publish s", ".3f"),
           ("first_update_s", "1st update", ".3f"), ("update_s", "update s", ".3f")]  # fmt: skip


def row(first: str, second: str, values: dict[str, float], ratio: bool = False) -> str:
    cells = [
        f"{v:>11.3f}" if ratio else f"{v:>11{spec}}" for v, spec in ((values[k], f) for k, _, f in COLUMNS)
    ]
    return f"{first:>8}{second:>11}" + "".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2, help="timed optimizer steps")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per optimizer step")
    parser.add_argument("--rank", type=int, default=16, help="the LoRA rank (all linear layers)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        path, rank = args.one.rsplit(":", 1)
        print(json.dumps(run_one(path, int(rank), args.steps, args.tokens, args.threads)))
        return
    print(
        f"{args.tokens} tokens a step, {args.steps} timed steps, {args.threads} threads, LoRA rank "
        f"{args.rank} on every linear layer"
    )
    print(f"{'model':>8}{'training':>11}" + "".join(f"{title:>11}" for _, title, _ in COLUMNS))
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            path = make_model_dir(model, str(Path(tmp) / model))  # made here: its peak is not the runs'
            rows = {}
            for name, rank in (("full", 0), ("lora", args.rank)):
                command = [sys.executable, __file__, "--one", f"{path}:{rank}", "--steps", str(args.steps),
                           "--tokens", str(args.tokens), "--threads", str(args.threads)]  # fmt: skip
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                rows[name] = json.loads(out.strip().splitlines()[-1])
                print(row(model, name, rows[name]))
            ratios = {k: rows["lora"][k] / rows["full"][k] for k, _, _ in COLUMNS}
            print(row(model, "lora/full", ratios, ratio=True))


if __name__ == "__main__":
    main()
