"""`asyncrl-chat`: the verifiers v1 harness asyncrl trains with by default.

It is verifiers' `null` harness (the system prompt, the task's prompt, then model turns with the task's
MCP tools until a reply without tool calls) run as a loop inside the env-server worker, instead of as a
program that `uv` prepares and starts for every rollout: no package index needed, and no interpreter to
start per rollout, which on a small box costs more than the rollout itself. Every model call still goes
through the rollout's interception endpoint, so the trace records each turn exactly as with `null`.

verifiers finds a harness by importing its id as a top-level module, hence this package beside `asyncrl`:
`agent.harness.id = "asyncrl-chat"`.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import httpx
import verifiers.v1 as vf
from openai import APIStatusError, AsyncOpenAI
from verifiers.v1.clients import ModelContext
from verifiers.v1.dialects.chat import message_to_wire
from verifiers.v1.harnesses.utils.mcp import call_mcp, connect_mcp
from verifiers.v1.runtimes import ProgramResult, Runtime
from verifiers.v1.task import TaskData
from verifiers.v1.trace import Trace


class AsyncrlChatHarnessConfig(vf.HarnessConfig):
    id: str = "asyncrl-chat"


class AsyncrlChatHarness(vf.Harness[AsyncrlChatHarnessConfig]):
    """Plain chat with the task's MCP tools, in-process; see the module doc."""

    APPENDS_SYSTEM_PROMPT = True
    SUPPORTS_MCP = True
    SUPPORTS_RESUME = True
    EXECUTES_CODE = False
    NEEDS_CONTAINER = False

    async def launch(
        self,
        ctx: ModelContext,
        trace: Trace,
        runtime: Runtime,
        endpoint: str,
        secret: str,
        mcp_urls: dict[str, str],
        data: TaskData,
    ) -> ProgramResult:
        system_prompt, prompt = self.resolve_prompt(data)
        messages: list[dict[str, Any]] = (
            [{"role": "system", "content": system_prompt}] if system_prompt else []
        )
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": prompt})
        elif prompt is not None:
            messages += [message_to_wire(m) for m in prompt]
        servers = {name: {"url": url, "timeout": self.config.tool_timeout} for name, url in mcp_urls.items()}
        async with AsyncExitStack() as stack:
            # The endpoint is plain HTTP on loopback: without `verify=False` every client would load the CA
            # bundle, 20 ms of CPU, half of what a whole single-turn rollout costs otherwise.
            http = await stack.enter_async_context(httpx.AsyncClient(verify=False, timeout=None))
            client = AsyncOpenAI(base_url=endpoint, api_key=secret, http_client=http)
            tools, dispatch, connections = (
                await connect_mcp({"mcpServers": servers}, stack) if servers else ([], {}, {})
            )
            try:
                await _chat(client, ctx.model, messages, tools, dispatch, connections)
            except APIStatusError as e:
                # A turn the interception refused (a @stop, max_turns, a provider error) ends the program;
                # the trace already says why.
                return ProgramResult(exit_code=1, stdout="", stderr=f"model call refused: {e}")
        return ProgramResult(exit_code=0, stdout="", stderr="")


async def _chat(
    client: AsyncOpenAI,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    dispatch: dict[str, tuple[str, str]],
    connections: dict[str, Any],
) -> None:
    """Model turns until one calls no tool; each tool call's result goes back as a tool message."""
    while True:
        extra = {"tools": tools} if tools else {}
        completion = await client.chat.completions.create(model=model, messages=messages, **extra)
        message = completion.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return
        for call in message.tool_calls:
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "name": call.function.name, "content": await _tool(
                    call.function.name, call.function.arguments, dispatch, connections
                )}
            )  # fmt: skip


async def _tool(
    name: str, arguments: str | None, dispatch: dict[str, tuple[str, str]], connections: dict[str, Any]
) -> Any:
    """A tool call's result, or the error the model should see instead (it may correct itself)."""
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError as e:
        return f"error: the arguments are not valid JSON ({e}); call the tool again with a JSON object"
    if not isinstance(args, dict):
        return f"error: the arguments must be a JSON object, not {type(args).__name__}"
    if name not in dispatch:
        return f"error: there is no tool {name!r}; the tools are {', '.join(sorted(dispatch)) or 'none'}"
    return await call_mcp(connections, dispatch, name, args)


__all__ = ["AsyncrlChatHarness", "AsyncrlChatHarnessConfig"]
