"""A small OpenAI-compatible server for tests that answers with scripted assistant text.

It renders prompts with the tiny model's real chat template and tokenizer, so token ids and /tokenize
behave like the built-in server's; only the generated text comes from the script.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from asyncrl.inference.api.output_parsers import assistant_message
from asyncrl.inference.server_process import free_port
from asyncrl.models import load_tokenizer


class Script:
    def __init__(self, outputs: list[str], strip_content: bool = False) -> None:
        self.outputs = list(outputs)
        self.strip_content = strip_content
        """Answer the message with stripped content while the token ids keep the spaces, so the chat
        template re-renders the turn differently from what was generated."""
        self.requests: list[tuple[str, dict[str, Any]]] = []


def _app(script: Script, tokenizer_path: str) -> FastAPI:
    tokenizer = load_tokenizer(tokenizer_path)
    app = FastAPI()

    def render(messages: list[dict], tools: list | None, generation: bool) -> list[int]:
        return list(
            tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=generation, tokenize=True, return_dict=False
            )
        )

    def generated(text: str) -> tuple[list[int], list[float]]:
        ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
        return ids, [-0.5] * len(ids)

    @app.post("/tokenize")
    async def tokenize(body: dict[str, Any]) -> dict[str, Any]:
        script.requests.append(("tokenize", body))
        tokens = render(body["messages"], body.get("tools"), body.get("add_generation_prompt", True))
        return {"tokens": tokens, "count": len(tokens)}

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        script.requests.append(("chat", body))
        return answer(render(body["messages"], body.get("tools"), True))

    @app.post("/v1/chat/completions/tokens")
    async def chat_tokens(body: dict[str, Any]) -> dict[str, Any]:
        """A chat whose prompt is the given `tokens` (the route of verifiers' 2025 token client)."""
        script.requests.append(("chat_tokens", body))
        return answer(body["tokens"])

    def answer(prompt_ids: list[int]) -> dict[str, Any]:
        text = script.outputs.pop(0)
        ids, logprobs = generated(text)
        message = assistant_message(text.strip() if script.strip_content else text, "hermes", None)
        choice = {
            "index": 0,
            "message": message,
            "logprobs": {"content": [{"token": "", "logprob": lp, "top_logprobs": []} for lp in logprobs]},
            "finish_reason": "tool_calls" if "tool_calls" in message else "stop",
            "prompt_token_ids": prompt_ids,
            "token_ids": ids,
            "policy_version": 3,
        }
        return {"id": "scripted", "object": "chat.completion", "created": 0, "model": "scripted",
                "prompt_token_ids": prompt_ids, "choices": [choice]}  # fmt: skip

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> dict[str, Any]:
        script.requests.append(("completions", body))
        text = script.outputs.pop(0)
        ids, logprobs = generated(text)
        choice = {"index": 0, "text": text, "logprobs": {"token_logprobs": logprobs}, "finish_reason": "stop",
                  "prompt_token_ids": body["prompt"], "token_ids": ids, "policy_version": 3}  # fmt: skip
        return {"choices": [choice]}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "scripted", "object": "model", "max_model_len": 2048}]}

    @app.post("/inference/v1/generate")
    async def generate(body: dict[str, Any]) -> dict[str, Any]:
        """The token route, in the shape verifiers' renderers reads."""
        script.requests.append(("generate", body))
        ids, logprobs = generated(script.outputs.pop(0))
        content = [{"token": f"token_id:{t}", "logprob": lp} for t, lp in zip(ids, logprobs, strict=True)]
        choice = {"index": 0, "token_ids": ids, "logprobs": {"content": content}, "finish_reason": "stop"}
        return {"request_id": "scripted", "prompt_token_ids": body["token_ids"], "choices": [choice]}

    return app


@contextmanager
def scripted_server(script: Script, tokenizer_path: str = "tiny") -> Iterator[str]:
    """Serve `script` on 127.0.0.1 in a thread, rendering and encoding with the tokenizer of
    `tokenizer_path` (a model dir, or `tiny`); yields the base URL."""
    port = free_port()
    app = _app(script, tokenizer_path)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "scripted server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
