"""`/update_weights {"source": [URLs], "version": N}`: the inference server fetches through shardcast into
its own dir, checks, then loads; a fetch that fails loads nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM

from asyncrl.broadcast.config import InferenceBroadcastConfig
from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess
from tests.integration.broadcast.nodes import NodeThread, same_files


def _publish_variant(source: Path, weights: Path, step: int, scale: float) -> Path:
    """The model at `source` with noise of `scale` added, published as weights/step_<step>/."""
    model = AutoModelForCausalLM.from_pretrained(source)
    torch.manual_seed(step)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * scale)
    out = weights / f"step_{step}"
    model.save_pretrained(out)
    (out / "STABLE").touch()
    return out


@pytest.fixture(scope="module")
def origin(tmp_path_factory, tiny_dir) -> Iterator[NodeThread]:
    weights = tmp_path_factory.mktemp("run") / "weights"
    _publish_variant(tiny_dir, weights, 3, 0.5)
    with NodeThread(weights_dir=weights, shard_mb=0.25) as node:
        node.wait_for_version(3)
        yield node


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dir) -> Iterator[tuple[InferenceServerProcess, Path]]:
    inbox = tmp_path_factory.mktemp("node-b")
    config = InferenceConfig(port=0, num_threads=1, broadcast=InferenceBroadcastConfig(dir=inbox, wait_s=1))
    with InferenceServerProcess(ModelConfig(path="tiny"), config, 0, inbox.parent / "server.log") as process:
        yield process, inbox


def _greedy(url: str) -> dict:
    body = {
        "model": "tiny",
        "prompt": "weights",
        "max_tokens": 16,
        "temperature": 0,
        "return_token_ids": True,
    }
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def _update(url: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/update_weights", json=body, timeout=120)


@pytest.mark.slow
def test_weights_reach_the_server_through_a_source_and_later_versions_as_deltas(server, origin):
    process, inbox = server
    weights = origin.config.weights_dir
    before = _greedy(process.url)
    response = _update(process.url, {"source": [origin.url], "version": 3})
    assert response.status_code == 200, response.text
    assert response.json()["policy_version"] == 3 and response.json()["path"] == str(inbox / "step_3")
    assert same_files(inbox / "step_3", weights / "step_3")
    after = _greedy(process.url)
    assert after["policy_version"] == 3 and after["token_ids"] != before["token_ids"]

    # The next version, a small step away: the server fetches deltas against step_3, which it kept.
    _publish_variant(weights / "step_3", weights, 4, 1e-3)
    origin.wait_for_version(4)
    response = _update(process.url, {"source": origin.url, "version": 4})
    assert response.status_code == 200, response.text
    fetch = response.json()["fetch"]
    assert fetch["delta_base"] == 3 and fetch["delta_shards"] > 0
    assert fetch["wire_bytes"] < fetch["total_bytes"]
    assert same_files(inbox / "step_4", weights / "step_4")
    assert httpx.get(f"{process.url}/health").json()["policy_version"] == 4


@pytest.mark.slow
def test_a_fetch_that_fails_loads_nothing_and_the_old_weights_keep_serving(server, origin):
    process, _ = server
    before = _greedy(process.url)
    refusals = [
        ({"source": [origin.url], "version": 99}, 404, "version 99 is on none of the sources"),
        ({"source": ["http://127.0.0.1:9"], "version": 5}, 400, "no source answered"),
        ({"source": [origin.url], "path": "/tmp", "version": 5}, 400, "exactly one"),
        ({"source": [], "version": 5}, 400, "source"),
    ]
    for body, status, message in refusals:
        response = _update(process.url, body)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]["message"]
    after = _greedy(process.url)
    assert after["token_ids"] == before["token_ids"]
    assert after["policy_version"] == before["policy_version"]


@pytest.mark.slow
def test_a_lora_adapter_travels_as_a_version_like_any_other_and_serves(server, origin, tiny_dir):
    peft = pytest.importorskip("peft")
    process, inbox = server
    weights = origin.config.weights_dir
    torch.manual_seed(5)
    settings = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    out = weights / "step_20"
    peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), settings).save_pretrained(out)
    (out / "STABLE").touch()
    origin.wait_for_version(20)
    before = _greedy(process.url)
    response = _update(process.url, {"source": [origin.url], "version": 20})
    assert response.status_code == 200, response.text
    assert same_files(inbox / "step_20", out)
    whole = sum(f.stat().st_size for f in (weights / "step_3").glob("*.safetensors"))
    assert response.json()["fetch"]["total_bytes"] < whole / 2, "an adapter is a fraction of the weights"
    after = _greedy(process.url)
    assert after["policy_version"] == 20 and after["token_ids"] != before["token_ids"]
