"""A v1 taskset with a Toolset, multi-turn: the tool runs as an MCP server, and the rollout trains on the
model's turns only, token-exact across turns. The model is scripted (a tiny random model does not call
tools); it speaks the token route with a tokenizer whose tool-call markers are single tokens, as
renderers' qwen3 tool parser requires."""

from __future__ import annotations

import asyncio

import pytest

from asyncrl.envs.client import ModelClient
from asyncrl.envs.verifiers.config import VerifiersConfig
from asyncrl.envs.verifiers.taskset import TasksetEnvironment
from asyncrl.models import load_tokenizer
from tests.scripted_server import Script, scripted_server

CALL = '<tool_call>\n{"name": "calc_add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


def test_a_tool_call_runs_and_only_the_models_turns_train(tool_tokenizer, tmp_path, vf_packages):
    tokenizer = load_tokenizer(str(tool_tokenizer))
    config = VerifiersConfig(renderer={"name": "default", "tool_parser": "qwen3"}, retries=0)
    env = TasksetEnvironment("asyncrl-test-calc", {}, config, str(tool_tokenizer), tmp_path / "logs")
    script = Script([CALL, "5"])

    async def main(url):
        async with env, ModelClient(url, "scripted") as client:
            return await env.run(client, env.dataset[0], {"temperature": 1.0, "top_p": 1.0, "max_tokens": 64})

    with scripted_server(script, str(tool_tokenizer)) as url:
        rollout = asyncio.run(main(url))
    assert rollout.error is None
    assert rollout.reward == pytest.approx(1.0 + 0.1 * (1 - 1 / 32))  # correct, and brief
    assert rollout.metrics == {"tool_messages": 1.0}
    assert [m["role"] for m in rollout.completion] == ["assistant", "tool", "assistant"]
    assert rollout.completion[1]["content"] == "5"

    first, second = (body["token_ids"] for kind, body in script.requests if kind == "generate")
    generated = [
        tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id] for text in (CALL, "5")
    ]
    # The second turn's prompt is the first prompt and reply verbatim, then the tool message.
    assert second[: len(first) + len(generated[0])] == first + generated[0]
    [(ids, mask, logprobs, _)] = rollout.token_samples()
    assert ids == second + generated[1]
    assert [t for t, m in zip(ids, mask, strict=True) if m] == generated[0] + generated[1]
    tool_span = ids[len(first) + len(generated[0]) : len(second)]
    assert "5" in tokenizer.decode(tool_span) and not any(mask[len(first) + len(generated[0]) : len(second)])
    assert {lp for lp, m in zip(logprobs, mask, strict=True) if m} == {-0.5}
