"""What the server generates is what the model computes: greedy tokens and logprobs against transformers."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest
import torch

from asyncrl.models import load_model

NEAR_TIE = 1e-4


@pytest.fixture(scope="module")
def model(server):
    """The reference: transformers on the device the server computes on."""
    return load_model("tiny").to("cuda" if server.inference.device == "cuda" else "cpu")


def _complete(url: str, prompt: list[int], **body) -> dict:
    payload = {"model": "tiny", "prompt": prompt, "return_token_ids": True, **body}
    response = httpx.post(f"{url}/v1/completions", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


@torch.inference_mode()
def _logits(model, ids: list[int]) -> torch.Tensor:
    """The reference model's logits [len(ids), V] for `ids`, on the CPU."""
    return model(torch.tensor([ids], device=model.device)).logits[0].float().cpu()


def _check_greedy(model, prompt: list[int], served: list[int], max_tokens: int) -> None:
    """`served` equals transformers' greedy continuation, or diverges only at a near tie."""
    with torch.inference_mode():
        reference = model.generate(
            torch.tensor([prompt], device=model.device),
            max_new_tokens=max_tokens,
            do_sample=False,
            top_k=None,
            top_p=None,
        )[0, len(prompt) :].tolist()
    for i, (ours, theirs) in enumerate(zip(served, reference, strict=False)):
        if ours != theirs:
            logprobs = _logits(model, prompt + served[:i])[-1].log_softmax(-1)
            gap = abs(logprobs[ours] - logprobs[theirs]).item()
            assert gap < NEAR_TIE, f"diverged at token {i} with a logprob gap of {gap}"
            return
    assert len(served) == len(reference) or served[-1] in model.generation_config.eos_token_id


def test_greedy_matches_transformers_generate(server, model):
    prompt = list(b"The quick brown fox")
    choice = _complete(server.url, prompt, max_tokens=40, temperature=0)
    _check_greedy(model, prompt, choice["token_ids"], 40)


def test_greedy_matches_transformers_with_16_concurrent_requests_of_different_lengths(server, model):
    prompts = [list(("x" * (i % 5) + f"prompt {i} " + "ab" * i).encode()) for i in range(16)]
    lengths = [8 + 5 * i for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [
            pool.submit(_complete, server.url, p, max_tokens=n, temperature=0)
            for p, n in zip(prompts, lengths, strict=True)
        ]
        choices = [f.result() for f in futures]
    for prompt, n, choice in zip(prompts, lengths, choices, strict=True):
        _check_greedy(model, prompt, choice["token_ids"], n)


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 1.0), (0.0, 1.0)])
def test_logprobs_match_a_fresh_forward_pass(server, model, temperature, top_p):
    prompt = list(b"logprobs, please")
    choice = _complete(server.url, prompt, max_tokens=24, temperature=temperature, top_p=top_p, logprobs=0)
    tokens = choice["token_ids"]
    logits = _logits(model, prompt + tokens)[len(prompt) - 1 : -1]
    scale = temperature if temperature > 0 else 1.0
    expected = (logits / scale).log_softmax(-1).gather(1, torch.tensor(tokens).unsqueeze(1)).squeeze(1)
    served = torch.tensor(choice["logprobs"]["token_logprobs"])
    assert torch.allclose(served, expected, atol=1e-4), (served - expected).abs().max()


def test_top_p_logprobs_are_renormalised_over_the_nucleus(server, model):
    prompt = list(b"nucleus")
    choice = _complete(server.url, prompt, max_tokens=16, temperature=1.0, top_p=0.5, logprobs=0)
    tokens = choice["token_ids"]
    logprobs = _logits(model, prompt + tokens)[len(prompt) - 1 : -1].log_softmax(-1)
    for position, (token, served) in enumerate(
        zip(tokens, choice["logprobs"]["token_logprobs"], strict=True)
    ):
        sorted_lp, order = logprobs[position].sort(descending=True)
        mass_before = sorted_lp.exp().cumsum(0) - sorted_lp.exp()
        nucleus = order[mass_before < 0.5]
        assert token in nucleus.tolist()
        expected = logprobs[position, token] - logprobs[position, nucleus].logsumexp(0)
        assert abs(served - expected.item()) < 1e-4
