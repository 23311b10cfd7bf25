"""A real inference server returns TOPLOC proofs on choices when asked, and they verify."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.rollouts import Rollout
from asyncrl.toploc.verify import verify_rollouts

MAX_TOKENS = 70


def _rollout(choice: dict, body: dict) -> Rollout:
    return Rollout(
        prompt_token_ids=choice["prompt_token_ids"],
        token_ids=choice["token_ids"],
        toploc_proofs=choice["toploc_proofs"],
        temperature=body.get("temperature", 1.0),
        top_p=body.get("top_p", 1.0),
        max_tokens=body["max_tokens"],
        finish_reason=choice["finish_reason"],
        stop=body.get("stop", []),
    )


def _complete(url: str, **fields) -> tuple[dict, list[dict]]:
    body = {
        "model": "tiny",
        "prompt": "reverse: hello world",
        "max_tokens": MAX_TOKENS,
        "return_token_ids": True,
    }
    body.update(fields)
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    response.raise_for_status()
    return body, response.json()["choices"]


def test_choices_carry_one_proof_per_chunk_that_verifies(server, tiny_reference):
    body, choices = _complete(server.url, n=3, toploc=True, temperature=0.8, top_p=0.95, stop=["xyz"])
    for choice in choices:
        assert len(choice["toploc_proofs"]) == math.ceil(len(choice["token_ids"]) / 32)
    verdicts = verify_rollouts(tiny_reference, [_rollout(c, body) for c in choices], ToplocConfig())
    assert [v.reasons for v in verdicts] == [(), (), ()]


def test_choices_carry_no_proofs_unless_asked(server):
    _, choices = _complete(server.url)
    assert "toploc_proofs" not in choices[0]


def test_a_stream_carries_the_proofs_on_its_final_chunk(server, tiny_reference):
    body = {
        "model": "tiny",
        "prompt": "stream me",
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "toploc": True,
        "return_token_ids": True,
    }
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    choices = [e["choices"][0] for e in events if e["choices"]]
    assert all("toploc_proofs" not in c for c in choices[:-1])
    final = {
        **choices[-1],
        "prompt_token_ids": choices[0]["prompt_token_ids"],
        "token_ids": [t for c in choices for t in c["token_ids"]],
    }
    assert len(final["toploc_proofs"]) == math.ceil(len(final["token_ids"]) / 32)
    assert verify_rollouts(tiny_reference, [_rollout(final, body)], ToplocConfig())[0].passed


def test_chat_choices_carry_proofs(server):
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 40,
        "toploc": True,
    }
    choice = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60).json()["choices"][0]
    assert len(choice["toploc_proofs"]) >= 1


@pytest.mark.slow
def test_a_server_started_with_toploc_proves_every_request(tmp_path, tiny_dir, tiny_reference):
    config = InferenceConfig(port=0, num_threads=1, toploc=True)
    with InferenceServerProcess(ModelConfig(path="tiny"), config, 0, tmp_path / "server.log") as proc:
        body, choices = _complete(proc.url)
    assert verify_rollouts(tiny_reference, [_rollout(choices[0], body)], ToplocConfig())[0].passed
