"""What TOPLOC proofs cost: proof bytes per 32 tokens, generation tokens/s with proofs on vs off, and
verification time vs generation time for the same rollouts.

The workload is the orchestrator's: N requests kept at `--inflight` in flight, sampled at temperature 1
with a seed each, so the proofs-on and proofs-off runs generate the very same tokens. Runs alternate
off/on `--rounds` times. Other jobs on a shared box only ever add time, so the best run of each is the
estimate (medians shown too); the proof encoder thread's own CPU time, which they barely touch, is
reported against the CPU time of generating without proofs. Verification
is one prefill pass per batch of rollouts, in float32 and in bfloat16, plus the sampling and termination
checks, on as many torch threads as the engine had.

    .venv/bin/python benchmarks/toploc_overhead.py [--requests 256] [--inflight 64] [--model tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import statistics
import time

import torch

from asyncrl.inference.backend import SamplingParams
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.torch.engine import TorchEngine
from asyncrl.models import eos_token_ids, load_tokenizer, resolve_model_path
from asyncrl.toploc.builder import ProofEncoder
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.rollouts import Rollout
from asyncrl.toploc.verify import ReferenceModel, verify_rollouts


async def generate(
    args: argparse.Namespace, prompts: list[list[int]], toploc: bool, routed_experts: bool = False
) -> tuple[float, float, list[Rollout]]:
    """Wall and process CPU seconds to generate every request (model load excluded), and the rollouts;
    `routed_experts`: an MoE engine records each token's experts too."""
    config = InferenceConfig(max_num_seqs=args.inflight, num_threads=args.threads, device=args.device)
    engine = TorchEngine(args.model, args.dtype, config)
    eos = eos_token_ids(str(resolve_model_path(args.model)), load_tokenizer(args.model))
    await engine.start()
    pending = iter(enumerate(prompts))
    rollouts: list[Rollout | None] = [None] * len(prompts)

    async def worker() -> None:
        for i, prompt in pending:
            params = SamplingParams(
                max_tokens=args.max_tokens,
                seed=i,
                stop_token_ids=eos,
                toploc=toploc,
                routed_experts=routed_experts,
            )
            tokens, proofs, finish = [], [], None
            async for delta in engine.generate(prompt, params):
                tokens += delta.token_ids
                proofs += delta.toploc_proofs
                finish = delta.finish_reason
            rollouts[i] = Rollout(
                prompt_token_ids=prompt,
                token_ids=tokens,
                toploc_proofs=proofs,
                temperature=1.0,
                top_p=1.0,
                max_tokens=args.max_tokens,
                finish_reason=finish,
            )

    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(args.inflight)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    await engine.stop()
    return elapsed, cpu, rollouts  # type: ignore[return-value]


def time_encoding() -> list[float]:
    """Make the proof encoder add the CPU seconds of its thread to the returned list's one number."""
    spent = [0.0]
    encode = ProofEncoder._encode

    def timed(self: ProofEncoder, jobs: list) -> None:
        start = time.thread_time()
        encode(self, jobs)
        spent[0] += time.thread_time() - start

    ProofEncoder._encode = timed  # type: ignore[method-assign]
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", help="`tiny` or a local HF model dir")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="the engine's")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the engine")
    parser.add_argument("--rounds", type=int, default=5, help="off/on runs, alternated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    prompts = [[rng.randrange(32, 127) for _ in range(rng.randint(16, 64))] for _ in range(args.requests)]
    print(
        f"workload: {args.requests} requests, {args.inflight} in flight, <= {args.max_tokens} tokens each, "
        f"model {args.model} ({args.dtype}), {args.threads} engine thread(s), {args.rounds} rounds"
    )

    asyncio.run(generate(args, prompts[: args.inflight], toploc=True))  # warm-up: first-use costs
    encoding_cpu = time_encoding()
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for toploc in (False, True):
            elapsed, cpu_s, rollouts = asyncio.run(generate(args, prompts, toploc))
            wall[toploc].append(elapsed)
            cpu[toploc].append(cpu_s)
    tokens = sum(len(r.token_ids) for r in rollouts)
    full_chunks = [
        len(base64.b64decode(p)) for r in rollouts for p in r.toploc_proofs[: len(r.token_ids) // 32]
    ]
    all_bytes = sum(len(base64.b64decode(p)) for r in rollouts for p in r.toploc_proofs)

    torch.set_num_threads(args.threads)
    verified = {}
    for dtype in ("float32", "bfloat16"):
        reference = ReferenceModel.load(args.model, dtype)
        start = time.perf_counter()
        verdicts = verify_rollouts(reference, rollouts, ToplocConfig())
        verified[dtype] = (time.perf_counter() - start, sum(v.passed for v in verdicts))

    best_on = min(wall[True])
    print(
        f"{'proof size':<34}{statistics.mean(full_chunks):>10.1f} bytes per 32 tokens "
        f"({all_bytes / tokens * 32:.1f} counting each rollout's partial last chunk)"
    )
    for toploc, label in ((False, "off"), (True, "on")):
        print(
            f"{'generation, proofs ' + label:<34}{tokens / min(wall[toploc]):>10.0f} tokens/s "
            f"(best of {args.rounds}; median {tokens / statistics.median(wall[toploc]):.0f})"
        )
    by_medians = statistics.median(wall[True]) / statistics.median(wall[False]) - 1
    encoder_share = encoding_cpu[0] / args.rounds / statistics.median(cpu[False])
    print(
        f"{'overhead of proofs':<34}{(best_on / min(wall[False]) - 1) * 100:>10.1f} % wall time "
        f"({by_medians * 100:+.1f} % by medians; the encoder thread's CPU: {encoder_share * 100:.1f} % "
        "of generating without proofs)"
    )
    print(f"{'generation of these rollouts':<34}{best_on:>10.2f} s")
    for dtype, (seconds, passed) in verified.items():
        print(
            f"{'verification of the same, ' + dtype:<34}{seconds:>10.2f} s  ({best_on / seconds:.1f}x faster "
            f"than generation; {passed} of {len(rollouts)} pass)"
        )


if __name__ == "__main__":
    main()
