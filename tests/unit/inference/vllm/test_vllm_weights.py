"""A weights dir is checked against the served model before vLLM may load it (a failed reload kills
vLLM's engine)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from asyncrl.inference.backend import WeightUpdateError
from asyncrl.inference.vllm.weights import check_same_model, tensor_shapes

SERVED = {"model.embed_tokens.weight": (16, 8), "model.norm.weight": (8,)}


def _weights_dir(path, tensors: dict[str, tuple[int, ...]], files: int = 1):
    path.mkdir()
    names = sorted(tensors)
    for i in range(files):
        part = {name: torch.zeros(tensors[name]) for name in names[i::files]}
        save_file(part, str(path / f"model-{i}.safetensors"))
    return path


def test_shapes_come_from_every_shard(tmp_path):
    directory = _weights_dir(tmp_path / "w", SERVED, files=2)
    assert tensor_shapes(directory) == SERVED


def test_the_same_model_passes_with_or_without_a_tied_head(tmp_path):
    check_same_model(_weights_dir(tmp_path / "same", SERVED), SERVED)
    check_same_model(_weights_dir(tmp_path / "head", {**SERVED, "lm_head.weight": (16, 8)}), SERVED)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"model.embed_tokens.weight": (16, 8)}, "no tensor 'model.norm.weight'"),
        ({**SERVED, "model.norm.weight": (9,)}, "another shape"),
        ({**SERVED, "model.layers.9.mlp.weight": (2, 2)}, "another model"),
    ],
)
def test_another_model_is_refused(tmp_path, tensors, message):
    with pytest.raises(WeightUpdateError, match=message):
        check_same_model(_weights_dir(tmp_path / "w", tensors), SERVED)


def test_missing_empty_and_unreadable_dirs_are_refused(tmp_path):
    with pytest.raises(WeightUpdateError, match="does not exist"):
        check_same_model(tmp_path / "missing", SERVED)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightUpdateError, match="no \\*.safetensors"):
        check_same_model(tmp_path / "empty", SERVED)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightUpdateError, match="cannot read"):
        check_same_model(tmp_path / "broken", SERVED)
