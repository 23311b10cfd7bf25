"""`/inference/v1/generate`, the token route of train clients, driven by verifiers' own `renderers` client
(unmodified) and by plain HTTP, on each backend."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from openai import AsyncOpenAI

# The [verifiers] extra: `make test` installs it; the GPU check's venv, which collects every test, does not.
pytest.importorskip("renderers")
from renderers import DefaultRendererConfig, OverlongPromptError, create_renderer  # noqa: E402
from renderers.client import generate  # noqa: E402
from transformers import AutoTokenizer

# Two-byte and three-byte characters: the tiny model's tokens are bytes, so they span several tokens.
MESSAGES = [{"role": "system", "content": "Reverse the text."}, {"role": "user", "content": "héllo ✓ wörld"}]


@pytest.fixture(scope="module")
def renderer(tiny_dir):
    return create_renderer(AutoTokenizer.from_pretrained(str(tiny_dir)), DefaultRendererConfig())


def renderers_generate(server, renderer, messages=MESSAGES, **sampling):
    async def call():
        client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        async with client:
            return await generate(
                client=client, renderer=renderer, messages=messages, model="tiny", sampling_params=sampling
            )

    return asyncio.run(call())


def post(server, body, route="/inference/v1/generate"):
    return httpx.post(f"{server.url}{route}", json=body, timeout=120)


def test_renderers_client_gets_the_tokens_and_logprobs_the_server_generated(server, renderer):
    out = renderers_generate(server, renderer, temperature=0.0, max_tokens=12)
    # The same prompt ids through the completions route: the same greedy tokens and logprobs.
    completion = post(
        server,
        {
            "prompt": out["prompt_ids"],
            "max_tokens": 12,
            "temperature": 0,
            "logprobs": 0,
            "return_token_ids": True,
        },
        "/v1/completions",
    ).json()["choices"][0]
    assert out["completion_ids"] == completion["token_ids"]
    assert len(out["completion_ids"]) == 12 or out["completion_ids"][-1] in renderer.get_stop_token_ids()
    assert out["completion_logprobs"] == pytest.approx(completion["logprobs"]["token_logprobs"], abs=1e-4)
    assert out["finish_reason"] == completion["finish_reason"]


def test_the_prompt_renders_as_the_servers_chat_template_does_multi_byte_text_included(server, renderer):
    out = renderers_generate(server, renderer, temperature=1.0, max_tokens=4, seed=1)
    tokenized = post(server, {"messages": MESSAGES}, "/tokenize").json()
    assert out["prompt_ids"] == tokenized["tokens"]
    assert "héllo ✓ wörld".encode() in bytes(t for t in out["prompt_ids"] if t < 256)


def test_sampling_is_seeded_and_its_logprobs_are_the_sampled_tokens(server, renderer):
    first = renderers_generate(server, renderer, temperature=1.0, max_tokens=16, seed=7)
    again = renderers_generate(server, renderer, temperature=1.0, max_tokens=16, seed=7)
    assert first["completion_ids"] == again["completion_ids"]
    assert len(first["completion_logprobs"]) == len(first["completion_ids"])
    assert all(-30 < lp <= 0 for lp in first["completion_logprobs"])


def test_a_stop_token_ends_the_choice_and_is_returned(server):
    sampling = {"temperature": 1.0, "seed": 5, "max_tokens": 16, "ignore_eos": True}
    free = post(server, {"token_ids": list(b"reverse: hello"), "sampling_params": sampling}).json()
    ids = free["choices"][0]["token_ids"]
    stop = ids[5]
    sampling = {**sampling, "ignore_eos": False, "stop_token_ids": [stop]}
    stopped = post(server, {"token_ids": list(b"reverse: hello"), "sampling_params": sampling}).json()
    choice = stopped["choices"][0]
    assert choice["token_ids"] == ids[: ids.index(stop) + 1]
    assert choice["finish_reason"] == "stop"


def test_answers_carry_the_prompt_policy_versions_and_alternatives(server):
    body = {"token_ids": list(b"abc"), "sampling_params": {"n": 2, "max_tokens": 5, "logprobs": 2, "seed": 0}}
    answer = post(server, body).json()
    assert answer["prompt_token_ids"] == list(b"abc")
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    for choice in answer["choices"]:
        assert choice["policy_version"] == 0
        assert choice["token_policy_versions"] == [0] * len(choice["token_ids"])
        for token_id, entry in zip(choice["token_ids"], choice["logprobs"]["content"], strict=True):
            assert entry["token"] == f"token_id:{token_id}"
            assert [alt["token"].startswith("token_id:") for alt in entry["top_logprobs"]] == [True, True]
    assert answer["usage"]["completion_tokens"] == sum(len(c["token_ids"]) for c in answer["choices"])


def test_without_logprobs_asked_none_are_returned(server):
    answer = post(server, {"token_ids": list(b"abc"), "sampling_params": {"max_tokens": 3}}).json()
    assert answer["choices"][0]["logprobs"] is None


def test_renderers_refuses_an_overlong_prompt_from_the_servers_max_model_len(server, renderer):
    context = httpx.get(f"{server.url}/v1/models").json()["data"][0]["max_model_len"]
    long = [{"role": "user", "content": "x" * (context + 10)}]
    with pytest.raises(OverlongPromptError):
        renderers_generate(server, renderer, long, max_tokens=4)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"token_ids": []}, "token_ids"),
        ({"token_ids": [1], "stream": True}, "one JSON body"),
        ({"token_ids": [1], "sampling_params": {"top_k": 5}}, "top_k=5 is not implemented"),
        ({"token_ids": [1], "sampling_params": {"repetition_penalty": 1.3}}, "repetition_penalty"),
        ({"token_ids": [10**6]}, "outside the vocabulary"),
        ({"token_ids": [1], "sampling_params": {"stop_token_ids": [-1]}}, "stop_token_ids"),
        ({"token_ids": [1] * 5000}, "context window"),
        ({"token_ids": [1], "sampling_params": {"max_tokens": 0}}, "max_tokens"),
    ],
)
def test_bad_generate_requests_get_400_saying_what_is_wrong(server, body, says):
    answer = post(server, body)
    assert answer.status_code == 400
    assert says in answer.json()["error"]["message"]


def test_neutral_values_of_unimplemented_knobs_are_accepted(server):
    sampling = {
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "max_tokens": 2,
        "skip_special_tokens": False,
    }
    assert post(server, {"token_ids": [1], "sampling_params": sampling}).status_code == 200


def test_chat_with_return_token_ids_puts_the_prompt_ids_where_vllm_does(server):
    body = {"messages": MESSAGES, "max_tokens": 3, "return_token_ids": True, "logprobs": True}
    answer = post(server, body, "/v1/chat/completions").json()
    assert answer["prompt_token_ids"] == post(server, {"messages": MESSAGES}, "/tokenize").json()["tokens"]
    assert answer["prompt_token_ids"] == answer["choices"][0]["prompt_token_ids"]
