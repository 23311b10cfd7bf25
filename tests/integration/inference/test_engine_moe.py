"""The torch engine on both MoE families: what it serves is what transformers computes, tokens, logprobs
and the experts every token was routed to."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest
import torch

from asyncrl.inference.server_process import InferenceServerProcess
from asyncrl.models import load_model
from asyncrl.moe import decode_routed_experts, routers
from tests.integration.inference.conftest import inference_server

SERVED = [
    ("tiny-moe", "torch"),
    ("tiny-qwen3-moe", "torch"),
    pytest.param(("tiny-moe", "cuda"), marks=pytest.mark.gpu),
]
"""Both families on the CPU; the GLM-shaped one on the GPU too (`gpu` tests: scripts/gpu_check.sh)."""


@pytest.fixture(scope="module", params=SERVED, ids=lambda served: "-".join(served))
def moe_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The model's name, its server, and the device the reference forward runs on (the server's)."""
    model, backend = request.param
    with inference_server(model, backend, tmp_path_factory.mktemp("moe") / "server.log") as proc:
        yield model, proc, "cuda" if backend == "cuda" else "cpu"


def _complete(server: InferenceServerProcess, model: str, prompt: list[int], **body) -> httpx.Response:
    payload = {"model": model, "prompt": prompt, "return_token_ids": True, "logprobs": 0, **body}
    return httpx.post(f"{server.url}/v1/completions", json=payload, timeout=120)


@torch.inference_mode()
def _reference(model_name: str, ids: list[int], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' logprobs [len(ids), V] for `ids`, and the experts [len(ids), MoE layers, k] its
    routers chose at each position."""
    model = load_model(model_name).to(device)
    chosen: list[torch.Tensor] = []
    for router in routers(model):
        router.register_forward_hook(lambda module, args, output: chosen.append(output[2]))
    logits = model(torch.tensor([ids], device=device)).logits[0]
    return logits.log_softmax(-1).cpu(), torch.stack(chosen, dim=1).cpu()


def _as_sets(experts: torch.Tensor) -> torch.Tensor:
    return experts.sort(dim=-1).values


def test_greedy_tokens_logprobs_and_routed_experts_equal_transformers(moe_server):
    model_name, server, device = moe_server
    prompt = list(b"The quick brown fox")
    response = _complete(server, model_name, prompt, max_tokens=24, temperature=0, return_routed_experts=True)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    tokens = choice["token_ids"]
    logprobs, experts = _reference(model_name, prompt + tokens, device)
    produced = logprobs[len(prompt) - 1 : -1]
    assert produced.argmax(-1).tolist() == tokens
    served = torch.tensor(choice["logprobs"]["token_logprobs"])
    torch.testing.assert_close(
        served, produced.gather(1, torch.tensor(tokens)[:, None])[:, 0], atol=1e-4, rtol=0
    )
    routed = decode_routed_experts(choice["routed_experts"])
    layers = len(routers(load_model(model_name)))
    assert routed.shape == (len(tokens), layers, 2)
    # Token i was produced at position len(prompt) - 1 + i: that position's routing is what it carries.
    assert torch.equal(_as_sets(routed.long()), _as_sets(experts[len(prompt) - 1 : -1]))


def test_routed_experts_stay_exact_under_continuous_batching_of_sampled_requests(moe_server):
    model_name, server, device = moe_server
    prompts = [list(f"request {i}: ".encode()) + [100 + i] * i for i in range(12)]

    def ask(i: int) -> dict:
        response = _complete(
            server,
            model_name,
            prompts[i],
            max_tokens=6 + 3 * i,
            seed=i,
            temperature=1.0,
            return_routed_experts=True,
        )
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        choices = list(pool.map(ask, range(12)))
    for prompt, choice in zip(prompts, choices, strict=True):
        tokens = choice["token_ids"]
        _, experts = _reference(model_name, prompt + tokens, device)
        routed = decode_routed_experts(choice["routed_experts"])
        assert torch.equal(_as_sets(routed.long()), _as_sets(experts[len(prompt) - 1 : -1]))


def test_chat_choices_carry_routed_experts_of_every_choice(moe_server):
    model_name, server, device = moe_server
    body = {
        "model": model_name,
        "messages": [{"role": "user", "content": "reverse: abc"}],
        "max_tokens": 8,
        "n": 3,
        "return_token_ids": True,
        "return_routed_experts": True,
    }
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    for choice in response.json()["choices"]:
        routed = decode_routed_experts(choice["routed_experts"])
        _, experts = _reference(model_name, choice["prompt_token_ids"] + choice["token_ids"], device)
        start = len(choice["prompt_token_ids"]) - 1
        assert torch.equal(_as_sets(routed.long()), _as_sets(experts[start:-1]))


def test_a_dense_model_refuses_routed_experts_naming_why(start_server):
    response = _complete(start_server("tiny"), "tiny", list(b"hi"), max_tokens=2, return_routed_experts=True)
    assert response.status_code == 400
    assert "dense model" in response.json()["error"]["message"]


@pytest.mark.slow
def test_the_vllm_backend_refuses_routed_experts_saying_why(vllm_server):
    response = _complete(vllm_server, "tiny", list(b"hi"), max_tokens=2, return_routed_experts=True)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "Model Runner V2" in message and 'inference.backend = "torch"' in message
