"""`/update_weights` swaps a new policy in while requests are in flight, and refuses bad weights, on
both backends."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from asyncrl.inference.server_process import InferenceServerProcess

LONG = 2030
"""Tokens per streamed choice, near the tiny model's 2048-token window: the longer the generation, the
surer the update lands in its middle (vLLM on a fast box made 1500 tokens before the update landed)."""


@pytest.fixture(scope="module")
def perturbed_dir(tmp_path_factory, tiny_dir: Path) -> Path:
    """The tiny model with noise added to every weight: the same shape, a different policy."""
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    out = tmp_path_factory.mktemp("perturbed")
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_dir / name, out)  # a whole model dir, as the trainer publishes
    return out


@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory, tiny_dir: Path) -> tuple[Path, Path]:
    """A LoRA adapter of the tiny model as PEFT itself saves one (random factors, so it changes the
    policy), and the model it makes, merged by PEFT into a whole model dir."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(2)
    settings = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), settings)
    adapter, merged = tmp_path_factory.mktemp("adapter"), tmp_path_factory.mktemp("merged")
    model.save_pretrained(adapter)
    model.merge_and_unload().save_pretrained(merged)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_dir / name, merged)
    return adapter, merged


@pytest.fixture(params=["weights", "adapter"])
def new_policy(request) -> tuple[Path, Path]:
    """What the update loads, and a whole model dir of the policy it makes: a new model dir, or a LoRA
    adapter (merged into the served base: by the torch engine in memory, by the vLLM backend into a dir
    vLLM reloads)."""
    if request.param == "weights":
        perturbed = request.getfixturevalue("perturbed_dir")
        return perturbed, perturbed
    return request.getfixturevalue("adapter_dirs")


@pytest.fixture()
def fresh_server(start_server, backend):
    return start_server("tiny", backend)


@pytest.fixture()
def tiny_server(request, start_server, backend):
    """A server on the untouched tiny model: a fresh one, or for vLLM (about 30 s to start) the session's,
    for tests that must leave its weights as they are."""
    return request.getfixturevalue("vllm_server") if backend == "vllm" else start_server("tiny", backend)


def _greedy(url: str, prompt: str = "weights", max_tokens: int = 24, model: str = "tiny") -> dict:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "return_token_ids": True,
    }
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def _stream(url: str, prompt: str, n: int, started: threading.Event) -> list[dict]:
    """Stream a long greedy completion; set `started` once every choice has a token; return the choices."""
    body = {
        "model": "tiny",
        "prompt": prompt,
        "n": n,
        "max_tokens": LONG,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "return_token_ids": True,
    }
    choices = [{"token_ids": [], "token_policy_versions": []} for _ in range(n)]
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            assert "choices" in event, event
            chunk = event["choices"][0]
            choice = choices[chunk["index"]]
            choice["token_ids"] += chunk["token_ids"]
            choice["token_policy_versions"] += chunk["token_policy_versions"]
            choice.update({k: chunk[k] for k in ("finish_reason", "policy_version") if k in chunk})
            if all(c["token_ids"] for c in choices):
                started.set()
    return choices


def _asyncrl_figure(server: InferenceServerProcess, name: str) -> float:
    match = re.search(rf"^asyncrl_{name} (\S+)$", httpx.get(f"{server.url}/metrics").text, re.MULTILINE)
    assert match, f"asyncrl_{name} is in /metrics"
    return float(match.group(1))


@contextmanager
def _admitted_together(server: InferenceServerProcess, n_choices: int) -> Iterator[None]:
    """Hold vLLM's scheduler while the block sends its requests, then let all `n_choices` start at once.

    vLLM on two shared cores can admit concurrent requests seconds apart, long enough for the first to
    finish before the last starts; the weight update must land while every choice is generating."""
    match = re.search(r"vLLM serves behind this server at (\S+)", server.log_path.read_text())
    assert match, "the vLLM backend logs its vLLM server's address"
    vllm_url = match.group(1)
    httpx.post(f"{vllm_url}/pause", params={"mode": "keep"}, timeout=30).raise_for_status()
    try:
        yield
        deadline = time.monotonic() + 60
        while (
            _asyncrl_figure(server, "requests_running") + _asyncrl_figure(server, "requests_waiting")
            < n_choices
        ):
            assert time.monotonic() < deadline, "the requests never reached the vLLM backend"
            time.sleep(0.1)
        # The backend has sent them; a paused vLLM (its metrics frozen too) takes them into its queue at once.
        time.sleep(1)
    finally:
        httpx.post(f"{vllm_url}/resume", timeout=30).raise_for_status()


@pytest.mark.slow
def test_update_weights_keeps_requests_running(backend, fresh_server, new_policy, start_server):
    loaded, policy = new_policy
    before = _greedy(fresh_server.url)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        started = [threading.Event() for _ in range(4)]
        with _admitted_together(fresh_server, 4 * 2) if backend == "vllm" else nullcontext():
            pending = [
                pool.submit(_stream, fresh_server.url, f"request {i}", 2, started[i]) for i in range(4)
            ]
        for event in started:  # every request is mid-generation when the new weights land
            assert event.wait(60)
        update = httpx.post(
            f"{fresh_server.url}/update_weights", json={"path": str(loaded), "version": 7}, timeout=120
        )
        outputs = [choice for p in pending for choice in p.result()]
    assert update.status_code == 200, update.text
    assert update.json()["policy_version"] == 7

    for out in outputs:
        versions = out["token_policy_versions"]
        assert len(out["token_ids"]) == len(versions) == LONG, "a request lost tokens across the update"
        assert out["finish_reason"] == "length"
        assert versions[0] == 0 and versions[-1] == 7, "tokens from both policies"
        assert versions == sorted(versions), "versions only move forward within a choice"
        assert out["policy_version"] == 0, "the choice reports its oldest policy"
    # vLLM's backend checks the versions it streamed against vLLM's own record of each token's weights.
    assert "where vLLM records" not in fresh_server.log_path.read_text()

    # A request started after the swap is pure v7, and the new policy's tokens differ.
    after = _greedy(fresh_server.url)
    assert after["policy_version"] == 7
    assert set(after["token_policy_versions"]) == {7}
    assert after["token_ids"] != before["token_ids"]
    assert httpx.get(f"{fresh_server.url}/health").json()["policy_version"] == 7
    assert "asyncrl_weight_version 7.0" in httpx.get(f"{fresh_server.url}/metrics").text

    # The swapped-in weights are exactly the dir's (an adapter's: the base plus the adapter, as PEFT merges
    # it): the built-in engine loading that policy from scratch generates the same greedy tokens.
    reference = start_server(str(policy), "cuda" if backend == "cuda" else "torch")
    assert _greedy(reference.url, model=str(policy))["token_ids"] == after["token_ids"]


@pytest.mark.slow
def test_bad_weight_updates_are_refused_and_old_weights_keep_serving(tiny_server, tmp_path):
    before = _greedy(tiny_server.url)
    other = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=272,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "missing", tmp_path / "other", tmp_path / "empty"):
        response = httpx.post(
            f"{tiny_server.url}/update_weights", json={"path": str(path), "version": 3}, timeout=60
        )
        assert response.status_code == 400, response.text
        assert "old weights keep serving" in response.json()["error"]["message"]
    response = httpx.post(f"{tiny_server.url}/update_weights", json={"version": 3})
    assert response.status_code == 400
    after = _greedy(tiny_server.url)
    assert after["token_ids"] == before["token_ids"]
    assert after["policy_version"] == 0


@pytest.mark.slow
def test_adapters_that_cannot_apply_are_refused_and_old_weights_keep_serving(
    tiny_server, adapter_dirs, tmp_path
):
    peft = pytest.importorskip("peft")
    before = _greedy(tiny_server.url)
    shape = {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2}
    other = Qwen2ForCausalLM(Qwen2Config(vocab_size=272, num_hidden_layers=2, **shape))
    peft.get_peft_model(other, peft.LoraConfig(r=2, target_modules="all-linear")).save_pretrained(
        tmp_path / "other"
    )
    dora = peft.get_peft_model(
        AutoModelForCausalLM.from_pretrained(adapter_dirs[1]),
        peft.LoraConfig(r=2, target_modules="all-linear", use_dora=True),
    )
    dora.save_pretrained(tmp_path / "dora")
    refusals = {tmp_path / "other": "an adapter of another model", tmp_path / "dora": "use_dora = True"}
    for path, why in refusals.items():
        response = httpx.post(
            f"{tiny_server.url}/update_weights", json={"path": str(path), "version": 3}, timeout=60
        )
        assert response.status_code == 400, response.text
        assert why in response.json()["error"]["message"] and "old weights keep serving" in response.text
    assert _greedy(tiny_server.url)["token_ids"] == before["token_ids"]
