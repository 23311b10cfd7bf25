"""Synthetic rollout batches for trainer tests: tiny-model samples with on-policy inference logprobs."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from asyncrl.models import load_model
from asyncrl.moe import NOT_REPLAYED, RoutingRecorder, moe_shape
from asyncrl.transport.batches import Sample, write_batch


def make_samples(n: int, seed: int, model: torch.nn.Module | None = None) -> list[Sample]:
    """`n` samples of a prompt then a completion, advantages of +-1, and inference logprobs that the
    given model (default: the tiny model) assigns to the completion tokens; for an MoE model, also the
    experts its routers chose for each completion token, as the engine records them."""
    model = model or load_model("tiny")
    recorder = RoutingRecorder(model) if moe_shape(model) else None
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        prompt = [rng.randrange(32, 127) for _ in range(rng.randint(4, 12))]
        completion = [rng.randrange(32, 127) for _ in range(rng.randint(3, 20))]
        ids = prompt + completion
        with torch.no_grad():
            logprobs = model(torch.tensor([ids])).logits[0].log_softmax(-1)
        token_lp = [0.0] + logprobs[:-1].gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1).tolist()
        mask = [False] * len(prompt) + [True] * len(completion)
        routed = None
        if recorder is not None:  # token j came from position j - 1's routing
            chosen = torch.stack(recorder.take(), dim=1).to(torch.int16)
            routed = torch.full_like(chosen, NOT_REPLAYED)
            routed[len(prompt) :] = chosen[len(prompt) - 1 : -1]
        advantage = rng.choice([-1.0, 1.0])
        samples.append(
            Sample(
                input_ids=ids,
                loss_mask=mask,
                advantages=[advantage] * len(ids),
                inference_logprobs=[lp if m else 0.0 for lp, m in zip(token_lp, mask, strict=True)],
                policy_version=0,
                routed_experts=routed,
            )
        )
    if recorder is not None:
        recorder.close()
    return samples


def write_batches(run_dir: Path, steps: int, per_step: int = 8, model_name: str = "tiny") -> None:
    model = load_model(model_name)
    for step in range(1, steps + 1):
        write_batch(run_dir, step, make_samples(per_step, seed=step, model=model))
