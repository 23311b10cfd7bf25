"""Rollouts with TOPLOC proofs from the built-in engine, and copies of the tiny model with other weights."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from asyncrl.inference.backend import SamplingParams
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.torch.engine import TorchEngine
from asyncrl.models import load_model
from asyncrl.toploc.config import ProofConfig
from asyncrl.toploc.rollouts import Rollout

EOS = (258, 256)  # the tiny model's <|im_end|> and <|endoftext|>


def prompts(count: int, offset: int = 0) -> list[list[int]]:
    """Distinct byte-level prompts of various lengths."""
    return [list(b"task %d: " % (offset + i) + b"reverse this text " * (1 + i % 3)) for i in range(count)]


def generate(
    model: str,
    prompt_ids: list[list[int]],
    dtype: str = "float32",
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_tokens: int = 64,
    stop: tuple[str, ...] = (),
    claimed_temperature: float | None = None,
    settings: list[tuple[float, float, tuple[str, ...]]] | None = None,
    proofs: ProofConfig | None = None,
) -> list[Rollout]:
    """Rollouts of `model` through the in-process engine with proofs, as an honest worker reports them
    (or claiming `claimed_temperature` instead of the one used). With `settings`, prompt i is sampled
    with settings[i % len(settings)] = (temperature, top_p, stop) instead; `proofs` sets the engine's
    chunk size and top-k."""
    settings = settings or [(temperature, top_p, stop)]

    async def run() -> list[Rollout]:
        config = InferenceConfig(num_threads=1, toploc=proofs or ProofConfig())
        engine = TorchEngine(model, dtype, config, seed=0)
        await engine.start()

        async def one(i: int, prompt: list[int]) -> Rollout:
            temperature, top_p, stop = settings[i % len(settings)]
            params = SamplingParams(
                max_tokens, temperature, top_p, stop=stop, stop_token_ids=EOS, toploc=True
            )
            tokens, proofs, finish = [], [], None
            async for delta in engine.generate(prompt, params):
                tokens += delta.token_ids
                proofs += delta.toploc_proofs
                finish = delta.finish_reason
            return Rollout(
                prompt_token_ids=prompt,
                token_ids=tokens,
                toploc_proofs=proofs,
                temperature=temperature if claimed_temperature is None else claimed_temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                finish_reason=finish,
                stop=list(stop),
            )

        try:
            return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompt_ids))))
        finally:
            await engine.stop()

    return asyncio.run(run())


def save_variant(tiny_dir: Path, out_dir: Path, change: Callable[[torch.nn.Module], None]) -> str:
    """A copy of the tiny model (same tokenizer) with its weights changed by `change`."""
    model = load_model(str(tiny_dir))
    with torch.no_grad():
        change(model)
    model.save_pretrained(out_dir)
    for file in tiny_dir.iterdir():
        if not (out_dir / file.name).exists():
            shutil.copy(file, out_dir / file.name)
    return str(out_dir)
