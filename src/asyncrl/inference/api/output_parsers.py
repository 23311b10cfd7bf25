"""Reading tool calls and reasoning out of generated chat text, as vLLM's `--tool-call-parser hermes` and
`--reasoning-parser deepseek_r1` do. Only the message is reshaped: the generated token ids stay as
they were. Text that does not parse (malformed JSON in a tool call) stays plain content."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def parse_hermes_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """(content outside the calls, tool calls) from `<tool_call>{"name", "arguments"}</tool_call>` blocks.
    If any block is not a JSON object with a string `name`, nothing is parsed: it all stays content."""
    calls = []
    for body in TOOL_CALL.findall(text):
        try:
            call = json.loads(body)
        except json.JSONDecodeError:
            return text, []
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return text, []
        arguments = call.get("arguments", {})
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    if not calls:
        return text, []
    content = TOOL_CALL.sub("", text).strip()
    return content or None, calls


def parse_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning, content): what precedes `</think>` (its `<think>` opener, if any, removed) is reasoning;
    without `</think>` the whole text is content."""
    if THINK_CLOSE not in text:
        return None, text
    reasoning, content = text.split(THINK_CLOSE, 1)
    reasoning = reasoning.strip().removeprefix(THINK_OPEN).strip()
    return reasoning, content.strip()


TOOL_CALL_PARSERS = {"hermes": parse_hermes_tool_calls}
REASONING_PARSERS = {"deepseek_r1": parse_reasoning}


def assistant_message(text: str, tool_parser: str | None, reasoning_parser: str | None) -> dict[str, Any]:
    """The chat message for generated `text`, with reasoning and tool calls split out when configured."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning_parser:
        message["reasoning_content"], message["content"] = REASONING_PARSERS[reasoning_parser](text)
    if tool_parser:
        content, calls = TOOL_CALL_PARSERS[tool_parser](message["content"])
        if calls:
            message["content"], message["tool_calls"] = content, calls
    return message
