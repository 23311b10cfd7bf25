"""Tool use: plain typed Python functions offered to the model as OpenAI tools.

A tool's JSON schema comes from its signature (types, defaults) and its docstring (the first paragraph
describes the tool; `name: text` lines under `Args:` describe parameters). The model's calls are run
and answered as tool messages; a bad call or a tool that raises becomes an error message the model can
read, never a crash.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import typing
from collections.abc import Callable
from typing import Any

from asyncrl.envs.multi_turn import MultiTurnEnv
from asyncrl.envs.parsers import Parser
from asyncrl.envs.rubric import Rubric

JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array", dict: "object"}


def _json_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation) or annotation
    if origin not in JSON_TYPES:
        raise TypeError(f"tool parameters must be int, float, str, bool, list or dict, not {annotation!r}")
    return JSON_TYPES[origin]


def _arg_docs(doc: str) -> dict[str, str]:
    """`name: description` (or `name (type): description`) lines of an `Args:` section."""
    section = re.split(r"^\s*Args:\s*$", doc, maxsplit=1, flags=re.MULTILINE)
    if len(section) < 2:
        return {}
    found = {}
    for line in section[1].splitlines():
        match = re.match(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
        elif line.strip() and not line.startswith((" ", "\t")):
            break
    return found


def tool_schema(function: Callable) -> dict[str, Any]:
    """The OpenAI tool schema of a typed Python function."""
    doc = inspect.getdoc(function) or ""
    described = _arg_docs(doc)
    hints = typing.get_type_hints(function)
    properties: dict[str, Any] = {}
    required = []
    for name, param in inspect.signature(function).parameters.items():
        if name not in hints:
            raise TypeError(f"tool {function.__name__}: parameter {name!r} needs a type annotation")
        properties[name] = {"type": _json_type(hints[name])}
        if name in described:
            properties[name]["description"] = described[name]
        if param.default is inspect.Parameter.empty:
            required.append(name)
    return {
        "type": "function",
        "function": {
            "name": function.__name__,
            "description": doc.split("\n\n")[0].strip(),
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


class ToolEnv(MultiTurnEnv):
    """The model may call the tools; the rollout ends at the first turn without a tool call."""

    def __init__(
        self,
        dataset: list[dict[str, Any]],
        rubric: Rubric,
        tools: list[Callable],
        parser: Parser | None = None,
        max_turns: int = 8,
    ) -> None:
        super().__init__(dataset, rubric, parser, max_turns)
        self.functions = {f.__name__: f for f in tools}
        self.tools = [tool_schema(f) for f in tools]

    async def is_completed(self, messages: list[dict[str, Any]], state: dict[str, Any]) -> bool:
        return not messages[-1].get("tool_calls")

    async def env_response(
        self, messages: list[dict[str, Any]], state: dict[str, Any]
    ) -> list[dict[str, Any]]:
        replies = []
        for call in messages[-1]["tool_calls"]:
            content = await self.call_tool(call["function"]["name"], call["function"].get("arguments", "{}"))
            state["tool_calls"] = state.get("tool_calls", 0) + 1
            state["tool_errors"] = state.get("tool_errors", 0) + content.startswith("Error:")
            replies.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": content})
        return replies

    async def call_tool(self, name: str, arguments: str | dict[str, Any]) -> str:
        """Run one call; any problem is answered as an `Error: ...` message for the model."""
        function = self.functions.get(name)
        if function is None:
            return f"Error: there is no tool {name!r}; the tools are {', '.join(self.functions)}"
        try:
            kwargs = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError as e:
            return f"Error: the arguments of {name} are not valid JSON ({e.msg})"
        if not isinstance(kwargs, dict):
            return f"Error: the arguments of {name} must be a JSON object"
        try:
            inspect.signature(function).bind(**kwargs)
        except TypeError as e:
            return f"Error: bad arguments for {name}: {e}"
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(**kwargs)
            else:
                result = await asyncio.to_thread(function, **kwargs)
        except Exception as e:  # noqa: BLE001 - the model must hear of any failure of its call
            return f"Error: {name} raised {type(e).__name__}: {e}"
        return result if isinstance(result, str) else json.dumps(result)
