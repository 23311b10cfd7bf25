"""Environments against a real server: rollouts keep the exact tokens the server generated."""

from __future__ import annotations

import asyncio

import pytest

from asyncrl.envs.client import ModelClient, ModelRequestError
from asyncrl.envs.registry import load_environment
from asyncrl.models import load_tokenizer
from tests.scripted_server import Script, scripted_server


def test_a_rollout_keeps_the_servers_token_ids_and_logprobs(server):
    env = load_environment("reverse-text", num_examples=3, seed=5)

    async def main():
        async with ModelClient(server.url, "tiny") as client:
            return await asyncio.gather(
                *(env.run(client, task, {"max_tokens": 12, "temperature": 1.0}) for task in env.dataset)
            )

    tokenizer = load_tokenizer("tiny")
    for rollout in asyncio.run(main()):
        (turn,) = rollout.turns
        expected_prompt = tokenizer.apply_chat_template(
            rollout.prompt, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        assert turn.prompt_token_ids == list(expected_prompt)
        [(ids, mask, logprobs, _)] = rollout.token_samples()
        assert ids == turn.prompt_token_ids + turn.token_ids
        assert mask == [False] * len(turn.prompt_token_ids) + [True] * len(turn.token_ids)
        assert logprobs[len(turn.prompt_token_ids) :] == turn.logprobs
        assert len(turn.logprobs) == len(turn.token_ids) > 0
        assert 0.0 <= rollout.reward <= 1.0
        assert set(rollout.metrics) == {"lcs_ratio"}
        assert rollout.policy_version == 0


@pytest.mark.parametrize("name", ["reverse-text", "arithmetic", "calculator"])
def test_every_built_in_environment_runs_against_the_tiny_model(server, name):
    env = load_environment(name, num_examples=2)

    async def main():
        async with ModelClient(server.url, "tiny") as client:
            return await asyncio.gather(*(env.run(client, t, {"max_tokens": 16}) for t in env.dataset))

    for rollout in asyncio.run(main()):
        assert rollout.turns and rollout.metrics
        [(ids, mask, _, _)] = rollout.token_samples()
        assert sum(mask) == sum(len(t.token_ids) for t in rollout.turns)


def test_a_single_turn_group_is_one_request_for_n_choices_each_a_scored_rollout(server):
    env = load_environment("reverse-text", num_examples=1, seed=3)
    task = env.dataset[0]

    async def main():
        async with ModelClient(server.url, "tiny") as client:
            before = await client.engine_counters()
            rollouts = await env.run_group(client, task, {"max_tokens": 12, "temperature": 1.0}, 4)
            return rollouts, before, await client.engine_counters()

    rollouts, before, after = asyncio.run(main())
    assert len(rollouts) == 4 and len({tuple(r.turns[0].token_ids) for r in rollouts}) > 1
    prompt = rollouts[0].turns[0].prompt_token_ids
    # The server saw the prompt once: one request, four choices.
    assert after["prompt_tokens"] - before["prompt_tokens"] == len(prompt)
    assert after["sequences_finished"] - before["sequences_finished"] == 4
    for rollout in rollouts:
        assert rollout.turns[0].prompt_token_ids == prompt and rollout.task is task
        assert set(rollout.metrics) == {"lcs_ratio"} and 0.0 <= rollout.reward <= 1.0


def test_a_server_answering_fewer_choices_than_asked_is_a_clear_error():
    env = load_environment("reverse-text", num_examples=1, seed=3)

    async def main(url):
        async with ModelClient(url, "scripted") as client:
            await env.run_group(client, env.dataset[0], {"max_tokens": 12}, 4)

    with scripted_server(Script(["olleh"])) as url, pytest.raises(ModelRequestError) as error:
        asyncio.run(main(url))  # the scripted server answers one choice, whatever `n` asks
    assert "answered 1 choices to a request for 4" in str(error.value)
