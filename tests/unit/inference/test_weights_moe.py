"""MoE checkpoints as transformers writes them (one matrix per expert) read back into the stacked
parameters the served model holds."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from asyncrl.inference.backend import WeightUpdateError
from asyncrl.inference.weights import read_weights
from asyncrl.models import load_model


@pytest.mark.parametrize("name", ["tiny-moe", "tiny-qwen3-moe"])
def test_a_saved_moe_checkpoint_reads_back_as_the_models_stacked_expert_weights(name, tmp_path):
    model = load_model(name)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param))
    model.save_pretrained(tmp_path)
    tensors = read_weights(str(tmp_path), load_model(name))
    for key, param in model.named_parameters():
        if key in tensors:
            torch.testing.assert_close(tensors[key], param.detach(), rtol=0, atol=0)
    assert any(key.endswith("experts.gate_up_proj") for key in tensors)


def test_an_expert_missing_from_a_checkpoint_is_a_weight_update_error(tmp_path):
    model = load_model("tiny-moe")
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["model.layers.2.mlp.experts.3.up_proj.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(
        WeightUpdateError, match=r"model\.layers\.2\.mlp\.experts: no up_proj matrix for experts \[3\]"
    ):
        read_weights(str(tmp_path), model)


def test_projections_of_different_expert_counts_are_a_weight_update_error(tmp_path):
    model = load_model("tiny-qwen3-moe")
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["model.layers.0.mlp.experts.7.up_proj.weight"]  # the last expert: 0..6 still looks whole
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightUpdateError, match=r"no up_proj matrix for experts \[7\] \(of 0..7\)"):
        read_weights(str(tmp_path), model)
