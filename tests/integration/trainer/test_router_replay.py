"""Router replay on real rollouts: the torch engine records the experts behind every sampled token, the
batch carries them through packing, and the trainer's forward with replay reproduces the engine's
logprobs where its own routing would not."""

from __future__ import annotations

import asyncio

import pytest
import torch

from asyncrl.inference.backend import SamplingParams
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.torch.engine import TorchEngine
from asyncrl.models import load_model, resolve_model_path
from asyncrl.moe import NOT_REPLAYED, RouterReplay
from asyncrl.trainer.distributed import Ranks
from asyncrl.trainer.packing import micro_batches_for_rank
from asyncrl.trainer.policy import forward_logprobs
from asyncrl.trainer.train_step import routing_figures
from asyncrl.transport.batches import Batch, Sample

SINGLE = Ranks(rank=0, world_size=1, device=torch.device("cpu"))


async def _generate(model_dir: str) -> list[Sample]:
    """Groups of 4 sampled completions of 6 prompts, with the engine's logprobs and routed experts."""
    engine = TorchEngine(model_dir, "float32", InferenceConfig(num_threads=1))
    await engine.start()
    samples = []
    try:
        for i in range(6):
            prompt = list(f"prompt {i}:".encode())
            params = SamplingParams(max_tokens=16, temperature=1.0, seed=i, routed_experts=True)
            choices: dict[int, list] = {}
            async for delta in engine.generate(prompt, params, n=4):
                tokens, logprobs, routed = choices.setdefault(delta.index, ([], [], []))
                tokens += delta.token_ids
                logprobs += delta.logprobs
                routed += delta.routed_experts
            for tokens, logprobs, routed in choices.values():
                experts = torch.full((len(prompt) + len(tokens), 3, 2), NOT_REPLAYED, dtype=torch.int16)
                experts[len(prompt) :] = torch.tensor(routed, dtype=torch.int16)
                n = len(prompt) + len(tokens)
                mask = [False] * len(prompt) + [True] * len(tokens)
                samples.append(
                    Sample(prompt + tokens, mask, [1.0] * n, [0.0] * len(prompt) + logprobs, 0, 1.0, experts)
                )
    finally:
        await engine.stop()
    return samples


@pytest.fixture(scope="module")
def batch() -> Batch:
    return Batch.from_samples(asyncio.run(_generate(str(resolve_model_path("tiny-moe")))))


def _mismatch(model: torch.nn.Module, batch: Batch, replay: RouterReplay) -> tuple[float, dict[str, float]]:
    """The k3 estimate of KL(inference || trainer) over the sampled tokens, and the routing figures."""
    gaps = []
    for mb in micro_batches_for_rank(batch, 256, 4096, 0, 1):
        replay.replaying(mb.routed_experts, ~mb.padding)
        with torch.no_grad():
            logprobs, _ = forward_logprobs(model, mb)
        gaps.append((mb.inference_logprobs - logprobs)[mb.loss_mask])
    gap = torch.cat(gaps)
    return float((torch.exp(-gap) - 1 + gap).mean()), routing_figures(replay, SINGLE)


def test_the_batch_keeps_the_routing_of_every_sampled_token_through_packing(batch):
    assert batch.routed_experts.shape == (len(batch.input_ids), 3, 2)
    for mb in micro_batches_for_rank(batch, 256, 4096, 0, 1):
        recorded = mb.routed_experts[:, 0, 0] != NOT_REPLAYED
        # A position carries routing exactly when it predicts a sampled token (grouped prompts included).
        assert torch.equal(recorded, mb.loss_mask)


def test_with_the_engines_weights_the_trainer_recomputes_its_logprobs_and_routing(batch):
    model = load_model("tiny-moe")
    kl, figures = _mismatch(model, batch, RouterReplay(model, apply=False))
    assert kl < 1e-9
    assert figures["moe/routing_mismatch_frac"] == 0.0


def test_replay_removes_the_mismatch_that_routing_drift_causes(batch):
    model = load_model("tiny-moe")
    torch.manual_seed(0)
    with torch.no_grad():  # the routers move, as a step of training moves them; nothing else does
        for name, param in model.named_parameters():
            if name.endswith("mlp.gate.weight"):
                param.add_(0.1 * param.std() * torch.randn_like(param))
    measuring = RouterReplay(model, apply=False)
    own_kl, own = _mismatch(model, batch, measuring)
    measuring.close()
    replayed_kl, replayed = _mismatch(model, batch, RouterReplay(model, apply=True))
    assert own["moe/routing_mismatch_frac"] > 0.05
    assert replayed_kl < own_kl / 10, (replayed_kl, own_kl)
    assert replayed["moe/expert_load_cv"] >= 0
