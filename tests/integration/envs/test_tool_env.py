"""ToolEnv against a scripted OpenAI-compatible server that answers with given tool calls."""

from __future__ import annotations

import asyncio

import pytest

from asyncrl.envs.client import ModelClient
from asyncrl.envs.rubric import Rubric
from asyncrl.envs.tool_env import ToolEnv
from tests.scripted_server import Script, scripted_server


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first addend
        b: the second addend
    """
    return a + b


def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


def answered(completion) -> float:
    return float(completion[-1].get("content") == "3")


TASK = {"prompt": [{"role": "user", "content": "What is 1 + 2?"}], "answer": "3"}


def _run(outputs: list[str], strip_content: bool = False):
    env = ToolEnv([TASK], Rubric([answered]), tools=[add, divide])
    script = Script(outputs, strip_content)

    async def main(url: str):
        async with ModelClient(url, "scripted") as client:
            return await env.run(client, TASK, {"max_tokens": 64})

    with scripted_server(script) as url:
        return asyncio.run(main(url)), script


def _call(name: str, arguments: str) -> str:
    """A hermes call written exactly as the chat template renders one."""
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


def test_a_good_call_is_run_and_answered_as_a_tool_message():
    rollout, script = _run([_call("add", '{"a": 1, "b": 2}'), "3"])
    tool_message = rollout.completion[1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "3"
    assert tool_message["tool_call_id"] == rollout.completion[0]["tool_calls"][0]["id"]
    assert rollout.reward == 1.0
    assert rollout.state["tool_calls"] == 1 and rollout.state["tool_errors"] == 0
    assert script.requests[0][1]["tools"][0]["function"]["name"] == "add"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (_call("subtract", '{"a": 1}'), "there is no tool 'subtract'"),
        (_call("add", '"{a: 1, b: 2"'), "not valid JSON"),
        (_call("add", '{"a": 1}'), "bad arguments for add"),
        (_call("divide", '{"a": 1, "b": 0}'), "divide raised ZeroDivisionError"),
    ],
)
def test_bad_calls_and_raising_tools_become_error_messages(call, error):
    rollout, _ = _run([call, "sorry"])
    content = rollout.completion[1]["content"]
    assert content.startswith("Error:") and error in content
    assert rollout.state["tool_errors"] == 1
    assert len(rollout.turns) == 2


def test_the_sample_is_the_generated_tokens_plus_the_environment_tokens_masked():
    rollout, _ = _run([_call("add", '{"a": 1, "b": 2}'), "3"])
    first, second = rollout.turns
    [(ids, mask, logprobs, _)] = rollout.token_samples()
    env_tokens = second.prompt_token_ids[len(first.prompt_token_ids) + len(first.token_ids) :]
    assert ids == first.prompt_token_ids + first.token_ids + env_tokens + second.token_ids
    expected_mask = [False] * len(first.prompt_token_ids) + [True] * len(first.token_ids)
    expected_mask += [False] * len(env_tokens) + [True] * len(second.token_ids)
    assert mask == expected_mask
    assert [lp for lp, m in zip(logprobs, mask, strict=True) if m] == first.logprobs + second.logprobs
    assert "<tool_response>" in bytes(t for t in env_tokens if t < 256).decode()
    assert rollout.state["spliced_turns"] == 0


def test_a_turn_the_template_would_retokenise_is_spliced_and_counted():
    # The model's first turn ends in spaces that the returned message drops: re-rendering the
    # conversation would not reproduce the generated ids.
    rollout, script = _run([_call("add", '{"a": 1, "b": 2}') + "  ", "3"], strip_content=True)
    assert rollout.state["spliced_turns"] == 1
    assert [kind for kind, _ in script.requests if kind != "tokenize"] == ["chat", "completions"]
    [(ids, mask, _, _)] = rollout.token_samples()  # one sequence: every prompt extended the earlier tokens
    first = rollout.turns[0]
    assert (
        ids[: len(first.prompt_token_ids) + len(first.token_ids)] == first.prompt_token_ids + first.token_ids
    )
    assert rollout.completion[-1]["content"] == "3"


def test_a_call_formatted_unlike_the_template_is_spliced_not_retokenised():
    compact = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    rollout, _ = _run([compact, "3"])
    assert rollout.state["spliced_turns"] == 1
    assert rollout.completion[1]["content"] == "3"
    first = rollout.turns[0]
    [(ids, _, _, _)] = rollout.token_samples()
    assert (
        ids[: len(first.prompt_token_ids) + len(first.token_ids)] == first.prompt_token_ids + first.token_ids
    )


def test_calculator_environment_with_a_scripted_model():
    from asyncrl.envs.registry import load_environment

    env = load_environment("calculator", num_examples=1, seed=4)
    task = env.dataset[0]
    expression = task["prompt"][-1]["content"].removeprefix("What is ").removesuffix("?")
    script = Script(
        [_call("calculate", f'{{"expression": "{expression}"}}'), f"\\\\boxed{{{task['answer']}}}"]
    )

    async def main(url: str):
        async with ModelClient(url, "scripted") as client:
            return await env.run(client, task, {"max_tokens": 64})

    with scripted_server(script) as url:
        rollout = asyncio.run(main(url))
    assert rollout.completion[1]["content"] == task["answer"]
    assert rollout.reward == 1.0
    assert rollout.metrics["turns"] == 2
