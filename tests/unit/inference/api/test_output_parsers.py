from __future__ import annotations

import json

from asyncrl.inference.api.output_parsers import assistant_message, parse_hermes_tool_calls, parse_reasoning
from asyncrl.inference.api.protocol import ChatCompletionRequest
from asyncrl.inference.api.responses import ChoiceShaper, ChoiceState, TokenTexts
from asyncrl.models import load_tokenizer

CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'


def test_a_valid_hermes_call():
    content, calls = parse_hermes_tool_calls("Let me add. " + CALL)
    assert content == "Let me add."
    assert [c["function"]["name"] for c in calls] == ["add"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": 1, "b": 2}
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")


def test_two_calls_and_no_other_content():
    second = '<tool_call>{"name": "mul", "arguments": "{\\"a\\": 3}"}</tool_call>'
    content, calls = parse_hermes_tool_calls(CALL + second)
    assert content is None
    assert [c["function"]["name"] for c in calls] == ["add", "mul"]
    assert calls[1]["function"]["arguments"] == '{"a": 3}'
    assert calls[0]["id"] != calls[1]["id"]


def test_malformed_json_inside_the_tags_stays_content():
    text = '<tool_call>{"name": "add", "arguments": {a: 1}}</tool_call>'
    assert parse_hermes_tool_calls(text) == (text, [])
    assert parse_hermes_tool_calls("<tool_call>[1, 2]</tool_call>") == ("<tool_call>[1, 2]</tool_call>", [])


def test_reasoning_then_answer():
    assert parse_reasoning("<think>2+2 is 4</think>\nThe answer is 4.") == ("2+2 is 4", "The answer is 4.")
    assert parse_reasoning("opened in the prompt</think>4") == ("opened in the prompt", "4")
    assert parse_reasoning("no thinking") == (None, "no thinking")


def test_reasoning_and_a_tool_call_together():
    message = assistant_message("<think>use the tool</think>" + CALL, "hermes", "deepseek_r1")
    assert message["reasoning_content"] == "use the tool"
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["name"] == "add"


def test_the_server_shapes_forced_output_into_tool_calls_and_keeps_the_token_ids():
    tokenizer = load_tokenizer("tiny")
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    request = ChatCompletionRequest(
        messages=[{"role": "user", "content": "1+2?"}], tools=tools, return_token_ids=True
    )
    state = ChoiceState(index=0, stops=())
    state.token_ids = tokenizer.encode("<think>sum</think>" + CALL, add_special_tokens=False)
    state.finish_reason = "stop"
    shaper = ChoiceShaper(tokenizer, TokenTexts(tokenizer), request, "hermes", "deepseek_r1")
    choice = shaper.full(state, prompt=[1, 2], version=0)
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["reasoning_content"] == "sum"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "add"
    assert choice["token_ids"] == state.token_ids, "parsing reshapes the message, never the tokens"

    no_tools = ChatCompletionRequest(messages=[{"role": "user", "content": "1+2?"}])
    plain = ChoiceShaper(tokenizer, TokenTexts(tokenizer), no_tools, "hermes", None).full(state, [1], 0)
    assert "tool_calls" not in plain["message"] and plain["finish_reason"] == "stop"
