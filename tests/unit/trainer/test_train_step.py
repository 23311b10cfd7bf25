from __future__ import annotations

import pytest
import torch

from asyncrl.config import ModelConfig
from asyncrl.trainer.config import TrainerConfig
from asyncrl.trainer.distributed import Ranks
from asyncrl.trainer.losses import masked_is
from asyncrl.trainer.model_setup import build
from asyncrl.trainer.train_step import train_on_batch
from asyncrl.transport.batches import Batch
from tests.batches import make_samples

SINGLE = Ranks(0, 1, torch.device("cpu"))


def _one_step(config: TrainerConfig):
    model, optimizers = build(ModelConfig(path="tiny"), config, seed=0, ranks=SINGLE)
    figures = train_on_batch(
        model, optimizers, Batch.from_samples(make_samples(6, seed=3)), masked_is, config, 1, 10, SINGLE
    )
    return figures, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_activation_checkpointing_changes_memory_not_results():
    plain, plain_weights = _one_step(TrainerConfig())
    checkpointed, ckpt_weights = _one_step(TrainerConfig(activation_checkpointing=True))
    assert checkpointed["loss"] == pytest.approx(plain["loss"], abs=1e-6)
    assert checkpointed["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-5)
    for name, tensor in plain_weights.items():
        assert torch.allclose(tensor, ckpt_weights[name], atol=1e-6), name


def test_micro_batch_size_does_not_change_the_step():
    whole, whole_weights = _one_step(TrainerConfig(micro_batch_tokens=4096))
    split, split_weights = _one_step(TrainerConfig(row_tokens=32, micro_batch_tokens=32))
    rows, rows_weights = _one_step(TrainerConfig(row_tokens=32, micro_batch_tokens=4096))
    assert rows["loss"] == pytest.approx(whole["loss"], abs=1e-6)
    assert split["loss"] == pytest.approx(whole["loss"], abs=1e-6)
    # AdamW's first step moves every weight by about lr (1e-4) whatever its gradient's size, so a
    # near-zero gradient's float noise shows as up to a few 1e-6; a wrong gradient moves it by ~1e-4.
    for name, tensor in whole_weights.items():
        assert torch.allclose(tensor, split_weights[name], atol=1e-5), name
        assert torch.allclose(tensor, rows_weights[name], atol=1e-5), name


def test_figures_cover_the_documented_metrics():
    figures, _ = _one_step(TrainerConfig())
    for name in ("loss", "mismatch_kl", "masked_frac", "entropy", "grad_norm", "lr"):
        assert name in figures
    assert figures["masked_frac"] == 0.0, "on-policy samples: every ratio is 1"
    assert figures["mismatch_kl"] == pytest.approx(0.0, abs=1e-6)


def _sequence_logprob(model: torch.nn.Module, sample) -> float:
    ids = torch.tensor([sample.input_ids])
    with torch.no_grad():
        logprobs = model(ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None]).squeeze(1)
    mask = torch.tensor(sample.loss_mask[1:])
    return float(logprobs[mask].sum())


def test_an_rl_step_makes_positive_advantage_samples_likelier_and_negative_ones_less_likely():
    config = TrainerConfig()
    model, optimizers = build(ModelConfig(path="tiny"), config, seed=0, ranks=SINGLE)
    samples = make_samples(8, seed=5, model=model)
    before = [_sequence_logprob(model, s) for s in samples]
    train_on_batch(model, optimizers, Batch.from_samples(samples), masked_is, config, 1, 10, SINGLE)
    after = [_sequence_logprob(model, s) for s in samples]
    for sample, old, new in zip(samples, before, after, strict=True):
        assert (new - old) * sample.advantages[0] > 0, (sample.advantages[0], old, new)
