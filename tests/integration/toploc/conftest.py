"""Fixtures: the tiny model as the claimed model, and models rollouts can be falsely claimed from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asyncrl.models import build_tiny_model
from asyncrl.toploc.verify import ReferenceModel
from tests.integration.toploc.engine_rollouts import save_variant


@pytest.fixture(scope="session")
def tiny_reference(tiny_dir: Path) -> ReferenceModel:
    return ReferenceModel.load(str(tiny_dir))


@pytest.fixture(scope="session")
def other_weights_dir(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> str:
    """The tiny architecture from another seed: different weights altogether."""
    out = build_tiny_model(tmp_path_factory.mktemp("other-weights"), seed=1)
    return str(out)


@pytest.fixture(scope="session")
def perturbed_layer_dir(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> str:
    """The tiny model with one decoder layer's matrices moved by noise of half their own spread."""

    def perturb(model: torch.nn.Module) -> None:
        generator = torch.Generator().manual_seed(1)
        for weight in model.model.layers[2].parameters():
            if weight.dim() == 2:
                weight.add_(torch.randn(weight.shape, generator=generator) * weight.std() * 0.5)

    return save_variant(tiny_dir, tmp_path_factory.mktemp("perturbed"), perturb)


@pytest.fixture(scope="session")
def confident_dir(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> str:
    """The tiny model with its logits scaled up (final norm x5): next-token entropy about 4 nats.

    Fresh from random init, tiny predicts almost uniformly (entropy 5.58 of at most 5.61 nats), so a
    token drawn at one temperature looks like one drawn at any other; a trained model's predictions are
    peaked like this copy's, which the sampling checks are tested on."""
    return save_variant(tiny_dir, tmp_path_factory.mktemp("confident"), lambda m: m.model.norm.weight.mul_(5))


@pytest.fixture(scope="session")
def confident_reference(confident_dir: str) -> ReferenceModel:
    return ReferenceModel.load(confident_dir)
