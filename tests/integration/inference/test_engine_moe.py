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

MOE_MODELS = ["tiny-moe", "tiny-qwen3-moe"]


@pytest.fixture(scope="module", params=MOE_MODELS)
def moe_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with inference_server(request.param, "torch", tmp_path_factory.mktemp("moe") / "server.log") as proc:
        yield request.param, proc


def _complete(server: InferenceServerProcess, model: str, prompt: list[int], **body) -> httpx.Response:
    payload = {"model": model, "prompt": prompt, "return_token_ids": True, "logprobs": 0, **body}
    return httpx.post(f"{server.url}/v1/completions", json=payload, timeout=120)


@torch.inference_mode()
def _reference(model_name: str, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' logprobs [len(ids), V] for `ids`, and the experts [len(ids), MoE layers, k] its
    routers chose at each position."""
    model = load_model(model_name)
    chosen: list[torch.Tensor] = []
    for router in routers(model):
        router.register_forward_hook(lambda module, args, output: chosen.append(output[2]))
    logits = model(torch.tensor([ids])).logits[0]
    return logits.log_softmax(-1), torch.stack(chosen, dim=1)


def _as_sets(experts: torch.Tensor) -> torch.Tensor:
    return experts.sort(dim=-1).values


def test_greedy_tokens_logprobs_and_routed_experts_equal_transformers(moe_server):
    model_name, server = moe_server
    prompt = list(b"The quick brown fox")
    response = _complete(server, model_name, prompt, max_tokens=24, temperature=0, return_routed_experts=True)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    tokens = choice["token_ids"]
    logprobs, experts = _reference(model_name, prompt + tokens)
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
    model_name, server = moe_server
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
        _, experts = _reference(model_name, prompt + tokens)
        routed = decode_routed_experts(choice["routed_experts"])
        assert torch.equal(_as_sets(routed.long()), _as_sets(experts[len(prompt) - 1 : -1]))


def test_chat_choices_carry_routed_experts_of_every_choice(moe_server):
    model_name, server = moe_server
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
        _, experts = _reference(model_name, choice["prompt_token_ids"] + choice["token_ids"])
        start = len(choice["prompt_token_ids"]) - 1
        assert torch.equal(_as_sets(routed.long()), _as_sets(experts[start:-1]))


def test_a_dense_model_refuses_routed_experts_naming_why(start_server):
    response = _complete(start_server("tiny"), "tiny", list(b"hi"), max_tokens=2, return_routed_experts=True)
    assert response.status_code == 400
    assert "dense model" in response.json()["error"]["message"]
