"""The benchmark half of scripts/gpu_check.sh, and the one-screen table it ends with.

On a model of about 0.5B parameters (Qwen2.5-0.5B's shape) built here with random weights, no download:
- the built-in engine's decode tokens/s (bf16, `--requests` requests of 128-token prompts at once, each
  ending at `--max-tokens` or EOS),
- the trainer's tokens/s and MFU (bf16 compute over fp32 master weights, one-rank FSDP2, AdamW): model
  FLOPs 6 x parameters x tokens (attention not counted) over the H200's measured bf16 rate,
- TOPLOC: the same rollouts generated with proofs, then verified; verification time against generation,
- an MoE step: a GLM-4.5-shaped MoE (GLM4_MOE's dims, random weights): engine decode tokens/s with routed
  experts returned, and trainer tokens/s with router replay.

Then it reads the `gpu` tests' JUnit report and writes everything to OUT/gpu_check.json and the table.
`--dry` runs it all on the CPU with a model of a few thousand parameters: a check of the script itself.

    python benchmarks/gpu_check.py --out DIR [--tests DIR/gpu_tests.xml] [--dry]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
import transformers
from toploc_overhead import generate
from trainer_throughput import make_batch
from transformers import AutoModelForCausalLM, Glm4MoeConfig, PretrainedConfig, Qwen2Config

from asyncrl.config import ModelConfig
from asyncrl.models import load_tokenizer
from asyncrl.moe import moe_shape
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.verify import ReferenceModel, verify_rollouts
from asyncrl.trainer.config import TrainerConfig
from asyncrl.trainer.distributed import init_distributed
from asyncrl.trainer.loop import router_replay
from asyncrl.trainer.losses import masked_is
from asyncrl.trainer.model_setup import build
from asyncrl.trainer.train_step import train_on_batch
from asyncrl.transport.batches import Batch

MAX_LISTED = 20
"""Longer test lists show their failures only, to keep the table on one screen."""
H200_BF16_FLOPS = 790e12
"""Dense bf16 matmul rate measured on the H200 this check is meant for (FLOP/s)."""

QWEN_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
}
GLM4_MOE = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "moe_intermediate_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "n_routed_experts": 32,
    "num_experts_per_tok": 4,
    "first_k_dense_replace": 1,
    "attention_bias": True,
    "vocab_size": 151936,
}
"""GLM-4.5-Air's layout (shared expert, dense first layer, sigmoid routing) at 0.55B parameters."""
DRY_MOE = {**GLM4_MOE, "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
           "n_routed_experts": 4, "num_experts_per_tok": 2, "vocab_size": 512}  # fmt: skip
DRY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
}


def make_model_dir(
    out: str, dims: dict[str, int], device: str, config_class: type[PretrainedConfig] = Qwen2Config
) -> tuple[str, int]:
    """A random-weight dir of shape `dims` (a Qwen2, or `config_class`'s architecture) with the tiny
    model's tokenizer; its parameter count."""
    config = config_class(max_position_embeddings=4096, tie_word_embeddings=True, **dims)
    with torch.device(device):  # random init on the GPU: seconds, not a minute of CPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    load_tokenizer("tiny").save_pretrained(out)
    return out, sum(p.numel() for p in model.parameters())


def train(path: str, device: str, tokens: int, steps: int, moe: bool = False) -> float:
    """Trainer tokens/s over `steps` optimizer steps of `tokens` tokens (after a warm-up step); an MoE
    trains with router replay on random recorded experts."""
    ranks = init_distributed(device, "bfloat16")
    config = TrainerConfig(micro_batch_tokens=min(tokens, 16384), row_tokens=4096, router_replay=moe)
    model, optimizers = build(ModelConfig(path=path, dtype="bfloat16"), config, 0, ranks)
    routing = router_replay(model, config)

    def batch(step: int) -> Batch:
        made = make_batch(tokens, step)
        if moe:
            shape = moe_shape(model)
            made.routed_experts = (
                torch.stack(  # k distinct experts per token, as a router picks them
                    [torch.randperm(shape.num_experts)[: shape.top_k] for _ in range(tokens)]
                )
                .unsqueeze(1)
                .expand(-1, len(shape.layers), -1)
                .to(torch.int16)
            )
        return made

    train_on_batch(model, optimizers, batch(0), masked_is, config, 1, steps + 1, ranks, routing)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(steps):
        train_on_batch(
            model, optimizers, batch(step + 1), masked_is, config, step + 2, steps + 1, ranks, routing
        )
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * tokens / (time.perf_counter() - start)


def read_tests(report: Path | None) -> list[dict[str, object]]:
    """Each test case of a pytest JUnit report: name, outcome, seconds."""
    if report is None or not report.exists():
        return []
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "FAILED", "error": "ERROR"}.get(tag, tag)
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        cases.append({"test": name, "outcome": outcome, "seconds": float(case.get("time", 0))})
    return cases


def table(result: dict) -> str:
    lines = [f"asyncrl GPU check on {result['device']} (torch {result['torch']}, transformers "
             f"{result['transformers']}){' -- DRY RUN on CPU' if result['dry'] else ''}"]  # fmt: skip
    tests = result["tests"]
    passed = sum(t["outcome"] == "passed" for t in tests)
    lines.append(f"{'gpu ' if not result['dry'] else ''}tests: {passed} of {len(tests)} passed")
    shown = tests if len(tests) <= MAX_LISTED else [t for t in tests if t["outcome"] != "passed"]
    lines += [f"  {t['outcome']:<7} {t['seconds']:>6.1f} s  {t['test']}" for t in shown]
    b = result["benchmark"]
    lines += [
        f"model: Qwen2 shape, {b['params'] / 1e6:.0f}M parameters, random weights, bf16",
        f"{'engine decode':<32}{b['decode_tokens_per_s']:>12,.0f} tokens/s  "
        f"({b['requests']} requests at once, {b['generated_tokens']} tokens)",
        f"{'trainer (1-rank FSDP2, AdamW)':<32}{b['trainer_tokens_per_s']:>12,.0f} tokens/s  "
        f"MFU {b['mfu'] * 100:.1f} % of {H200_BF16_FLOPS / 1e12:.0f} TFLOP/s (6N FLOPs per token)",
        f"{'TOPLOC: generation with proofs':<32}{b['toploc_generate_s']:>12.2f} s",
        f"{'TOPLOC: verification (bf16)':<32}{b['toploc_verify_s']:>12.2f} s  "
        f"({b['toploc_speedup']:.1f}x faster than generation; {b['toploc_passed']} of {b['requests']} pass; "
        "target 10x)",
        f"MoE: GLM-4.5 shape, {b['moe_params'] / 1e6:.0f}M parameters, random weights, bf16",
        f"{'MoE engine decode':<32}{b['moe_decode_tokens_per_s']:>12,.0f} tokens/s  (with routed experts)",
        f"{'MoE trainer (router replay)':<32}{b['moe_trainer_tokens_per_s']:>12,.0f} tokens/s",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="where gpu_check.json goes")
    parser.add_argument("--tests", type=Path, help="the gpu tests' JUnit XML report")
    parser.add_argument("--dry", action="store_true", help="on the CPU, a tiny model: checks the script")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--train-tokens", type=int, default=65536, help="tokens per optimizer step")
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    device = "cpu" if args.dry else "cuda"
    if args.dry:
        args.requests, args.max_tokens, args.train_tokens, args.train_steps = 8, 40, 2048, 1
    rng = random.Random(0)
    prompts = [[rng.randrange(32, 127) for _ in range(128)] for _ in range(args.requests)]
    with tempfile.TemporaryDirectory() as tmp:
        path, params = make_model_dir(tmp, DRY if args.dry else QWEN_05B, device)
        engine = argparse.Namespace(
            model=path,
            dtype="bfloat16",
            device=device,
            inflight=len(prompts),
            threads=0,
            max_tokens=args.max_tokens,
        )
        asyncio.run(generate(engine, prompts[:8], toploc=True))  # warm-up: first-use costs
        decode_s, _, rollouts = asyncio.run(generate(engine, prompts, toploc=False))
        generated = sum(len(r.token_ids) for r in rollouts)
        toploc_s, _, proved = asyncio.run(generate(engine, prompts, toploc=True))
        reference = ReferenceModel.load(path, "bfloat16", device)
        verify_rollouts(reference, proved[:2], ToplocConfig())  # warm-up
        start = time.perf_counter()
        verdicts = verify_rollouts(reference, proved, ToplocConfig())
        verify_s = time.perf_counter() - start
        del reference
        trainer_tokens_per_s = train(path, device, args.train_tokens, args.train_steps)
    with tempfile.TemporaryDirectory() as tmp:
        path, moe_params = make_model_dir(tmp, DRY_MOE if args.dry else GLM4_MOE, device, Glm4MoeConfig)
        engine = argparse.Namespace(**{**vars(engine), "model": path})
        asyncio.run(generate(engine, prompts[:8], toploc=False, routed_experts=True))
        moe_decode_s, _, moe_rollouts = asyncio.run(
            generate(engine, prompts, toploc=False, routed_experts=True)
        )
        moe_generated = sum(len(r.token_ids) for r in moe_rollouts)
        moe_trainer_tokens_per_s = train(path, device, args.train_tokens, args.train_steps, moe=True)
    result = {
        "dry": args.dry,
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tests": read_tests(args.tests),
        "benchmark": {
            "params": params,
            "requests": args.requests,
            "generated_tokens": generated,
            "decode_tokens_per_s": generated / decode_s,
            "trainer_tokens_per_s": trainer_tokens_per_s,
            "mfu": 6 * params * trainer_tokens_per_s / H200_BF16_FLOPS,
            "toploc_generate_s": toploc_s,
            "toploc_verify_s": verify_s,
            "toploc_speedup": toploc_s / verify_s,
            "toploc_passed": sum(v.passed for v in verdicts),
            "moe_params": moe_params,
            "moe_decode_tokens_per_s": moe_generated / moe_decode_s,
            "moe_trainer_tokens_per_s": moe_trainer_tokens_per_s,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print(table(result))


if __name__ == "__main__":
    main()
