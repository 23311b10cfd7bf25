"""Router replay on the MoE default job: how far the trainer's logprobs are from inference's, with and
without replaying inference's routing, on the same batches and the same weights.

One RL run of configs/reverse_text_moe.toml (every batch and weight version kept), then for every
`--every`-th step N, two measurements, each computed twice (the trainer routing itself, and replaying
the recorded experts):
- policies moved: the trainer's weights when it trained step N (weights/step_{N-1}) on step N's batch,
  sampled by policies N-1 and N-2, as the run trained it;
- numerics only: policy N samples the prompts of step N's batch in bfloat16 (the torch engine, as GPU
  inference runs), and the same weights in float32 (the trainer's master weights) recompute them: the
  step-0 mismatch prime-rl measured (their Qwen3-30B-A3B: 0.0015 without replay, 0.0005 with).
Prints, per setting, the median over those steps of the mismatch KL (k3 estimate of KL(inference ||
trainer) per sampled token, as the trainer's `mismatch_kl`) and of the share of sampled positions whose
trainer-side routing differs from inference's.

    .venv/bin/python benchmarks/moe_router_replay.py [--steps 120] [--every 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from asyncrl.inference.backend import SamplingParams
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.torch.engine import TorchEngine
from asyncrl.models import eos_token_ids, load_model, load_tokenizer
from asyncrl.moe import NOT_REPLAYED, RouterReplay
from asyncrl.trainer.distributed import Ranks
from asyncrl.trainer.packing import micro_batches_for_rank
from asyncrl.trainer.policy import forward_logprobs
from asyncrl.trainer.train_step import routing_figures
from asyncrl.transport.batches import Batch, Sample, load_batch
from asyncrl.transport.layout import rollouts_dir, weights_dir

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "reverse_text_moe.toml"
SINGLE = Ranks(rank=0, world_size=1, device=torch.device("cpu"))


def run_job(run: Path, steps: int, seed: int) -> None:
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "-c", str(CONFIG), "--output-dir", str(run),
               "--max-steps", str(steps), "--seed", str(seed), "--trainer.retention.weights", "0",
               "--trainer.retention.rollouts", "all"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)


async def sample_in_bfloat16(model_dir: Path, batch: Batch) -> Batch:
    """The prompts of `batch`, 4 completions each, sampled by the torch engine in bfloat16 with their
    logprobs and routed experts."""
    prompts = {tuple(s.input_ids[: s.loss_mask.index(True)]) for s in batch.samples() if True in s.loss_mask}
    engine = TorchEngine(str(model_dir), "bfloat16", InferenceConfig(num_threads=2))
    eos = eos_token_ids(model_dir, load_tokenizer(str(model_dir)))
    await engine.start()
    samples = []
    for i, prompt in enumerate(sorted(prompts)):
        params = SamplingParams(max_tokens=32, seed=i, stop_token_ids=eos, routed_experts=True)
        choices: dict[int, tuple[list, list, list]] = {}
        async for delta in engine.generate(list(prompt), params, n=4):
            tokens, logprobs, routed = choices.setdefault(delta.index, ([], [], []))
            tokens += delta.token_ids
            logprobs += delta.logprobs
            routed += delta.routed_experts
        for tokens, logprobs, routed in choices.values():
            n = len(prompt) + len(tokens)
            experts = torch.tensor(routed, dtype=torch.int16)
            laid = torch.full((n, *experts.shape[1:]), NOT_REPLAYED, dtype=torch.int16)
            laid[len(prompt) :] = experts
            mask = [False] * len(prompt) + [True] * len(tokens)
            samples.append(
                Sample([*prompt, *tokens], mask, [0.0] * n, [0.0] * len(prompt) + logprobs, 0, 1.0, laid)
            )
    await engine.stop()
    return Batch.from_samples(samples)


@torch.no_grad()
def measure(model_dir: Path, batch: Batch, replay: bool) -> tuple[float, float]:
    """Mismatch KL per sampled token and the routing-difference share of `batch` under the float32
    weights of `model_dir`, replaying or not."""
    model = load_model(str(model_dir))
    routing = RouterReplay(model, apply=replay)
    k3_sum, tokens = 0.0, 0
    for mb in micro_batches_for_rank(batch, 128, 4096, 0, 1):
        routing.replaying(mb.routed_experts, ~mb.padding)
        logprobs, _ = forward_logprobs(model, mb)
        log_ratio = (logprobs - mb.inference_logprobs)[mb.loss_mask]
        k3_sum += float((log_ratio.exp() - 1 - log_ratio).sum())
        tokens += int(mb.loss_mask.sum())
    return k3_sum / tokens, routing_figures(routing, SINGLE)["moe/routing_mismatch_frac"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="asyncrl-replay-") as tmp:
        run = Path(tmp) / "run"
        print(f"running {CONFIG.name} for {args.steps} steps (seed {args.seed}) ...", flush=True)
        run_job(run, args.steps, args.seed)
        steps = list(range(args.every, args.steps + 1, args.every))
        cases = {"policies moved": [], "numerics only": []}
        for step in steps:
            trained = load_batch(rollouts_dir(run, step))
            cases["policies moved"].append((weights_dir(run, step - 1), trained))
            resampled = asyncio.run(sample_in_bfloat16(weights_dir(run, step), trained))
            cases["numerics only"].append((weights_dir(run, step), resampled))
        results = {
            (case, replay): [measure(model_dir, batch, replay) for model_dir, batch in pairs]
            for case, pairs in cases.items()
            for replay in (False, True)
        }
    print(f"\nsteps {steps[0]}..{steps[-1]} every {args.every} (medians over {len(steps)} batches)")
    print(f"{'':42} {'mismatch KL':>12} {'routing differs':>16}")
    for case in cases:
        kl = {replay: statistics.median(k for k, _ in results[case, replay]) for replay in (False, True)}
        frac = {replay: statistics.median(f for _, f in results[case, replay]) for replay in (False, True)}
        print(f"{case + ': trainer routes itself':42} {kl[False]:>12.3e} {frac[False]:>15.1%}")
        print(f"{case + ': router replay':42} {kl[True]:>12.3e} {frac[True]:>15.1%}")
        print(f"{case + ': replay / own':42} {kl[True] / kl[False]:>12.3f}")


if __name__ == "__main__":
    main()
