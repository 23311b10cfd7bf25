"""verifiers v1 tasksets as asyncrl environments, with the real verifiers 0.4.0 and renderers: episodes
run by env-server workers against a real inference server, their traces turned into asyncrl rollouts."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from asyncrl.envs.client import ModelClient
from asyncrl.envs.verifiers.config import VerifiersConfig
from asyncrl.envs.verifiers.taskset import TasksetEnvironment, TasksetLoadError

GREEDY = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 12}


def run_tasks(server, env, indices, sampling=GREEDY):
    async def main():
        async with env, ModelClient(server.url, "tiny") as client:
            return [await env.run(client, env.dataset[i], sampling) for i in indices]

    return asyncio.run(main())


def taskset(tiny_dir, tmp_path, taskset_id, args, **verifiers):
    return TasksetEnvironment(
        taskset_id, args, VerifiersConfig(**verifiers), str(tiny_dir), tmp_path / "logs"
    )


def test_a_rollout_holds_exactly_the_tokens_and_logprobs_the_server_generated(server, tiny_dir, tmp_path):
    env = taskset(tiny_dir, tmp_path, "asyncrl-reverse-text", {"num_examples": 3})
    rollouts = run_tasks(server, env, [0, 1])
    for rollout in rollouts:
        assert rollout.error is None
        [turn] = rollout.turns
        tokenized = httpx.post(f"{server.url}/tokenize", json={"messages": rollout.prompt}).json()
        assert turn.prompt_token_ids == tokenized["tokens"]
        body = {"token_ids": turn.prompt_token_ids, "sampling_params": {**GREEDY, "logprobs": 0}}
        again = httpx.post(f"{server.url}/inference/v1/generate", json=body).json()["choices"][0]
        assert turn.token_ids == again["token_ids"]
        assert turn.logprobs == pytest.approx([e["logprob"] for e in again["logprobs"]["content"]], abs=1e-4)
        [(ids, mask, logprobs, _)] = rollout.token_samples()
        assert ids == turn.prompt_token_ids + turn.token_ids
        assert sum(mask) == len(turn.token_ids) and not any(mask[: len(turn.prompt_token_ids)])
        assert rollout.prompt == [{"role": "user", "content": rollout.task["prompt"]}]
        assert rollout.completion[0]["role"] == "assistant"
        assert 0.0 <= rollout.reward <= 1.0 and set(rollout.metrics) == {"exact"}


def test_failing_episodes_become_errored_rollouts_and_a_crashed_worker_comes_back(
    server, tiny_dir, tmp_path, vf_packages
):
    modes = ["raise", "hang", "crash", "ok"]
    env = taskset(tiny_dir, tmp_path, "asyncrl-test-modes", {"modes": modes}, retries=0, episode_timeout_s=5)
    raised, hung, crashed, fine = run_tasks(server, env, range(4))
    assert "this reward always raises" in raised.error
    assert "took over 5s" in hung.error
    assert "exited with code 3" in crashed.error
    assert fine.error is None and fine.turns and fine.metrics["replied"] in (0.0, 1.0)
    assert not raised.turns and not hung.turns and not crashed.turns


def test_a_failed_episode_is_retried(server, tiny_dir, tmp_path, vf_packages, monkeypatch):
    tries = tmp_path / "tries"
    monkeypatch.setenv("ASYNCRL_TEST_TRIES", str(tries))
    env = taskset(tiny_dir, tmp_path, "asyncrl-test-modes", {"modes": ["raise"]}, retries=2)
    [rollout] = run_tasks(server, env, [0])
    assert "this reward always raises" in rollout.error
    assert tries.read_text().splitlines() == ["try"] * 3  # the first try and two retries


def test_a_harness_that_never_calls_the_model_leaves_an_empty_trace_which_is_an_error(
    server, tiny_dir, tmp_path, vf_packages
):
    env = taskset(
        tiny_dir, tmp_path, "asyncrl-test-modes", {}, harness={"id": "asyncrl-test-silent"}, retries=0
    )
    [rollout] = run_tasks(server, env, [0])
    assert "no generated tokens" in rollout.error


def test_a_taskset_that_is_not_installed_is_a_user_error_naming_it(tiny_dir, tmp_path):
    with pytest.raises(TasksetLoadError, match="no-such-taskset.*install its package"):
        taskset(tiny_dir, tmp_path, "no-such-taskset", {})


def test_taskset_arguments_it_does_not_take_are_a_user_error(tiny_dir, tmp_path):
    with pytest.raises(TasksetLoadError, match="asyncrl-reverse-text"):
        taskset(tiny_dir, tmp_path, "asyncrl-reverse-text", {"min_chars": "many"})


def test_a_model_name_that_is_no_tokenizer_is_a_user_error(tmp_path):
    with pytest.raises(TasksetLoadError, match="verifiers.tokenizer"):
        TasksetEnvironment("asyncrl-reverse-text", {}, VerifiersConfig(), "tiny", tmp_path)
