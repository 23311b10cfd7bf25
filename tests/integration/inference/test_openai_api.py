"""The official `openai` client against a real server serving the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


CHAT = [{"role": "system", "content": "Reverse the text."}, {"role": "user", "content": "hello world"}]


def test_chat_with_n_returns_n_choices(client):
    out = client.chat.completions.create(model="tiny", messages=CHAT, n=4, max_tokens=12, temperature=1.0)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    for choice in out.choices:
        assert choice.message.role == "assistant"
        assert isinstance(choice.message.content, str)
        assert choice.finish_reason in ("stop", "length")
    assert out.usage.completion_tokens >= 4
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_chat_logprobs_with_top_logprobs(client):
    out = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=8, logprobs=True, top_logprobs=3, temperature=0.8
    )
    content = out.choices[0].logprobs.content
    assert len(content) == out.usage.completion_tokens
    for item in content:
        assert item.logprob <= 0
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].logprob >= item.logprob - 1e-6


def test_streaming_chat_yields_the_same_text_as_its_chunks(client):
    stream = client.chat.completions.create(
        model="tiny",
        messages=CHAT,
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish and finish[-1] in ("stop", "length")
    assert chunks[-1].usage is not None
    whole = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=20, temperature=0)
    assert text == whole.choices[0].message.content


def test_return_token_ids_and_policy_version(client):
    out = client.completions.create(
        model="tiny", prompt="abc", max_tokens=6, temperature=0, extra_body={"return_token_ids": True}
    )
    choice = out.choices[0].model_dump()
    assert choice["prompt_token_ids"] == list(b"abc")
    assert len(choice["token_ids"]) == out.usage.completion_tokens
    assert choice["policy_version"] == 0
    assert choice["token_policy_versions"] == [0] * len(choice["token_ids"])


def test_prompt_as_token_ids_equals_prompt_as_text(client):
    by_text = client.completions.create(model="tiny", prompt="xyz", max_tokens=8, temperature=0)
    by_ids = client.completions.create(model="tiny", prompt=list(b"xyz"), max_tokens=8, temperature=0)
    assert by_text.choices[0].text == by_ids.choices[0].text


def test_completion_logprobs_and_several_prompts(client):
    out = client.completions.create(model="tiny", prompt=["ab", "cde"], n=2, max_tokens=5, logprobs=2)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    for choice in out.choices:
        assert len(choice.logprobs.token_logprobs) == len(choice.logprobs.tokens)
        assert all(len(t) <= 2 for t in choice.logprobs.top_logprobs)


def test_stop_string_cuts_the_text(client):
    free = client.completions.create(model="tiny", prompt="q", max_tokens=30, temperature=0)
    text = free.choices[0].text
    if len(text) < 4:
        pytest.skip("the tiny model stopped too early to pick a stop string")
    stop = text[2:4]
    out = client.completions.create(model="tiny", prompt="q", max_tokens=30, temperature=0, stop=[stop])
    assert out.choices[0].text == text[: text.find(stop)]
    assert out.choices[0].finish_reason == "stop"


def test_seed_makes_sampling_reproducible(client):
    a = client.completions.create(model="tiny", prompt="s", max_tokens=16, temperature=1.0, seed=11)
    b = client.completions.create(model="tiny", prompt="s", max_tokens=16, temperature=1.0, seed=11)
    assert a.choices[0].text == b.choices[0].text


def test_models_health_and_metrics(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    metrics = httpx.get(f"{server.url}/metrics").text
    for name in (
        "asyncrl_generation_tokens_total",
        "asyncrl_requests_running",
        "asyncrl_requests_waiting",
        "asyncrl_batch_size_mean",
        "asyncrl_kv_cache_usage",
        "asyncrl_weight_version",
    ):
        assert name in metrics


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "tiny", "prompt": "a", "max_tokens": -1}, "max_tokens"),
        ({"model": "tiny", "prompt": "a", "max_tokens": 10**9}, "max_tokens"),
        ({"model": "tiny", "prompt": "a", "n": 0}, "n"),
        ({"model": "tiny", "prompt": "a", "temperature": -0.5}, "temperature"),
        ({"model": "tiny", "prompt": "a", "temperature": float("inf")}, "temperature"),  # sent as Infinity
        ({"model": "tiny", "prompt": "a", "top_p": 0}, "top_p"),
        ({"model": "tiny", "prompt": "x" * 5000}, "prompt"),
        ({"model": "tiny", "prompt": [1, 99999]}, "prompt"),
        ({"model": "tiny"}, "prompt"),
    ],
)
def test_bad_completion_requests_get_400_with_an_openai_error(server, body, param):
    # json.dumps, unlike httpx, writes an infinite float (as Python's own `Infinity`).
    content = json.dumps(body)
    response = httpx.post(f"{server.url}/v1/completions", content=content, headers=JSON, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"{not json", "not valid JSON"), (b"", "must be a JSON object"), (b"[1, 2]", "must be a JSON object")],
)
def test_a_body_that_is_not_a_json_object_gets_400_saying_so(server, content, says):
    response = httpx.post(f"{server.url}/v1/chat/completions", content=content, headers=JSON)
    assert response.status_code == 400
    assert says in response.json()["error"]["message"]


def test_unknown_model_gets_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=CHAT)
    assert info.value.body["code"] == "model_not_found"


def test_openai_client_sees_bad_input_as_bad_request(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=100000)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[])


def test_server_keeps_serving_after_bad_input(server, client):
    httpx.post(f"{server.url}/v1/completions", content=b"\x00garbage")
    httpx.post(f"{server.url}/v1/completions", json={"prompt": "a", "n": -3})
    out = client.completions.create(model="tiny", prompt="ok", max_tokens=3)
    assert out.choices[0].finish_reason in ("stop", "length")


def _metric(url: str, name: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise KeyError(name)


def test_a_client_that_goes_away_has_its_request_aborted(server):
    before = _metric(server.url, "asyncrl_generation_tokens_total")
    body = {"model": "tiny", "prompt": "long", "max_tokens": 2000, "ignore_eos": True, "n": 4}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/completions", json=body, timeout=0.5)
    deadline = time.monotonic() + 20
    while _metric(server.url, "asyncrl_requests_running") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(server.url, "asyncrl_requests_running") == 0, (
        "the engine kept generating for a client that left"
    )
    assert _metric(server.url, "asyncrl_generation_tokens_total") - before < 4 * 2000


def test_model_path_that_is_not_a_model_fails_at_start_up(tmp_path):
    for path in (tmp_path / "missing", tmp_path):
        result = subprocess.run(
            [sys.executable, "-m", "asyncrl.cli", "inference", "--model.path", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1
        assert str(path) in result.stderr
        assert "Traceback" not in result.stderr


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_logprobs_stay_valid_json_when_top_p_excludes_alternatives(server):
    body = {"model": "tiny", "prompt": "hi", "max_tokens": 3, "top_p": 0.01, "logprobs": 5}
    response = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    top = _strict_json(response.text)["choices"][0]["logprobs"]["top_logprobs"][0]
    assert len(top) == 5
    streamed = httpx.post(f"{server.url}/v1/completions", json={**body, "stream": True}, timeout=30)
    for line in streamed.text.splitlines():
        if line.startswith("data: {"):
            _strict_json(line[6:])


def test_a_vanishing_temperature_or_top_p_is_greedy(server):
    def text(**params):
        body = {"model": "tiny", "prompt": "greedy?", "max_tokens": 12, **params}
        return httpx.post(f"{server.url}/v1/completions", json=body, timeout=30).json()["choices"][0]["text"]

    greedy = text(temperature=0)
    assert text(temperature=1e-40) == greedy
    assert text(temperature=1.0, top_p=1e-50) == greedy


def test_huge_seeds_and_generated_ids_are_accepted(server):
    body = {"model": "tiny", "prompt": "x", "max_tokens": 3, "seed": 10**18, "return_token_ids": True}
    response = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    model_vocab = httpx.get(f"{server.url}/v1/models").json()["data"][0]
    assert model_vocab["id"] == "tiny"
    back = httpx.post(
        f"{server.url}/v1/completions", json={"model": "tiny", "prompt": [265], "max_tokens": 1}
    )
    assert back.status_code == 200, "ids the model can generate must be accepted as a prompt"


def test_more_bad_input_is_a_4xx_with_an_openai_body(server):
    cases = [
        ("/v1/completions", {"model": "tiny", "prompt": "a\ud800b"}, 400),
        ("/v1/completions", {"model": "tiny", "prompt": "a", "n": 100, "stream": True}, 400),
        (
            "/v1/chat/completions",
            {"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image"}]}]},
            400,
        ),
        ("/v1/no-such-route", {}, 404),
    ]
    for path, body, status in cases:
        response = httpx.post(
            f"{server.url}{path}",
            content=json.dumps(body).encode(),
            timeout=30,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == status, (path, body, response.text)
        assert response.json()["error"]["message"]


def test_text_content_parts_are_joined(client):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "you"}]}
    ]
    out = client.chat.completions.create(model="tiny", messages=messages, max_tokens=4, temperature=0)
    plain = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello you"}], max_tokens=4, temperature=0
    )
    assert out.choices[0].message.content == plain.choices[0].message.content


def test_tools_and_tool_messages_go_through_the_chat_template(server):
    add = {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {"type": "object", "properties": {}},
    }
    tools = [{"type": "function", "function": add}]
    messages = [
        {"role": "user", "content": "1+2?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "3"},
    ]  # fmt: skip
    body = {"model": "tiny", "messages": messages, "tools": tools, "max_tokens": 4, "return_token_ids": True}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    prompt = bytes(t for t in response.json()["choices"][0]["prompt_token_ids"] if t < 256).decode()
    assert '"name": "add"' in prompt and "<tool_response>\n3\n</tool_response>" in prompt


def test_answers_parse_with_the_apis_response_models_as_the_model_client_reads_them(server):
    from asyncrl.inference.api.protocol import ChatCompletionResponse, CompletionResponse, TokenizeResponse

    extensions = {"return_token_ids": True, "max_tokens": 6, "temperature": 1.0}
    chat = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "tiny", "messages": CHAT, "logprobs": True, "n": 2, **extensions},
        timeout=60,
    ).json()
    parsed = ChatCompletionResponse.model_validate(chat)
    for choice, raw in zip(parsed.choices, chat["choices"], strict=True):
        assert choice.token_ids == raw["token_ids"] and len(choice.logprobs.content) == len(raw["token_ids"])
        assert choice.prompt_token_ids and choice.message["role"] == "assistant"
    completion = httpx.post(
        f"{server.url}/v1/completions",
        json={"model": "tiny", "prompt": [97, 98], "logprobs": 0, **extensions},
        timeout=60,
    ).json()
    choice = CompletionResponse.model_validate(completion).choices[0]
    assert choice.prompt_token_ids == [97, 98] and len(choice.logprobs.token_logprobs) == len(
        choice.token_ids
    )
    tokens = httpx.post(f"{server.url}/tokenize", json={"model": "tiny", "prompt": "ab"}, timeout=60).json()
    assert TokenizeResponse.model_validate(tokens).tokens == [97, 98]


def test_chat_completions_tokens_generates_from_the_given_prompt_ids(server, client):
    """prime-rl's route as verifiers' 2025 token client posts to it (openai's `post`, `tokens` in the body):
    the prompt is `tokens`, exactly, not a rendering of `messages`."""
    from openai.types.chat import ChatCompletion

    rendered = httpx.post(f"{server.url}/tokenize", json={"model": "tiny", "messages": CHAT}).json()["tokens"]
    sampling = {"max_completion_tokens": 10, "temperature": 1.0, "seed": 5, "logprobs": True}
    extra = {"return_token_ids": True}
    by_messages = client.chat.completions.create(model="tiny", messages=CHAT, **sampling, extra_body=extra)
    body = {"model": "tiny", "messages": CHAT, "tokens": rendered, **sampling, **extra}
    by_tokens = client.post("/chat/completions/tokens", body=body, cast_to=ChatCompletion)
    same, given = by_messages.choices[0].model_dump(), by_tokens.choices[0].model_dump()
    assert given["prompt_token_ids"] == rendered
    assert given["token_ids"] == same["token_ids"]
    assert given["message"]["content"] == same["message"]["content"]
    assert len(given["logprobs"]["content"]) == len(given["token_ids"])

    other = rendered[:-3] + list(b"xyz") + rendered[-3:]  # not what `messages` renders to
    out = client.post("/chat/completions/tokens", body={**body, "tokens": other}, cast_to=ChatCompletion)
    assert out.choices[0].model_dump()["prompt_token_ids"] == other

    for tokens, says in (([10**9], "outside the vocabulary"), ([], "tokens")):
        answer = httpx.post(f"{server.url}/v1/chat/completions/tokens", json={**body, "tokens": tokens})
        assert answer.status_code == 400 and says in answer.text
