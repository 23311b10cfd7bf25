"""LoRA in the trainer, for real (PEFT, the tiny model, real batches): only the adapter trains, and what it
publishes is a PEFT adapter dir that PEFT and the inference engine turn into the trainer's own model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from asyncrl.config import LoraConfig, ModelConfig
from asyncrl.errors import UserError
from asyncrl.inference.weights import WeightReader
from asyncrl.models import load_model, load_tokenizer
from asyncrl.trainer.config import TrainerConfig
from asyncrl.trainer.distributed import init_distributed
from asyncrl.trainer.lora import add_lora
from asyncrl.trainer.losses import resolve_loss
from asyncrl.trainer.model_setup import build, publish
from asyncrl.trainer.train_step import train_on_batch
from asyncrl.transport.batches import Batch
from asyncrl.transport.layout import weights_dir
from tests.batches import make_samples

peft = pytest.importorskip("peft")
STEPS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny model after STEPS LoRA steps, its frozen weights as they were before, and its published
    adapter dir."""
    run_dir = tmp_path_factory.mktemp("lora")
    model_config = ModelConfig(path="tiny", lora=LoraConfig(rank=4, alpha=8))
    config = TrainerConfig.model_validate({"optim": {"lr": 0.02}, "micro_batch_tokens": 128})
    ranks = init_distributed("cpu")
    model, optimizers = build(model_config, config, seed=0, ranks=ranks)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    for step in range(1, STEPS + 1):
        batch = Batch.from_samples(make_samples(8, seed=step))
        train_on_batch(model, optimizers, batch, resolve_loss(config.loss), config, step, STEPS, ranks)
    publish(run_dir, STEPS, model, load_tokenizer("tiny"), ranks)
    model.eval()
    return model, frozen, weights_dir(run_dir, STEPS), optimizers


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


IDS = [72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100, 33, 10, 50, 43]


def test_only_the_adapter_trains_and_the_base_stays_bit_identical(trained):
    model, frozen, _, optimizers = trained
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], before) for n, before in frozen.items())
    assert any(params[n].abs().sum() > 0 for n in trainable if ".lora_B." in n), "B left at its zero start"
    optimized = {id(p) for o in optimizers for group in o.param_groups for p in group["params"]}
    assert optimized == {id(params[n]) for n in trainable}, "optimizer state for the adapter only"


def test_the_published_adapter_is_a_peft_dir_that_peft_loads_into_the_trainers_model(trained):
    model, _, adapter, _ = trained
    assert sorted(p.name for p in adapter.iterdir() if p.name.startswith("adapter_")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    loaded = peft.PeftModel.from_pretrained(load_model("tiny"), str(adapter)).eval()
    torch.testing.assert_close(_logits(loaded, IDS), _logits(model, IDS), rtol=0, atol=1e-5)


def test_the_inference_engines_merge_of_the_adapter_gives_the_trainers_model(trained):
    model, _, adapter, _ = trained
    served = load_model("tiny").eval()
    merged = WeightReader(served).read(str(adapter))
    assert merged and all(name.endswith("proj.weight") for name in merged)
    with torch.no_grad():
        for name, tensor in merged.items():
            served.get_parameter(name).copy_(tensor)
    torch.testing.assert_close(_logits(served, IDS), _logits(model, IDS), rtol=0, atol=1e-4)


def test_asyncrl_export_merges_the_adapter_into_a_whole_model_dir_equal_to_the_trainers(trained, tmp_path):
    model, _, adapter, _ = trained
    out = tmp_path / "merged"
    export = [sys.executable, "-m", "asyncrl.cli", "export"]
    result = subprocess.run([*export, str(adapter), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    merged = load_model(str(out)).eval()
    torch.testing.assert_close(_logits(merged, IDS), _logits(model, IDS), rtol=0, atol=1e-4)
    assert load_tokenizer(str(out)).encode("abc") == load_tokenizer("tiny").encode("abc")

    not_one = subprocess.run(
        [*export, str(out), "--out", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert not_one.returncode == 1 and "is not a LoRA adapter dir" in not_one.stderr


def test_lora_on_an_moe_model_is_refused_with_what_to_do():
    with pytest.raises(UserError, match=r"LoRA on MoE models \(glm4_moe\) is not supported yet"):
        add_lora(load_model("tiny-moe"), LoraConfig(rank=4))
