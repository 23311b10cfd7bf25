"""The sandbox service's app on 127.0.0.1 in a thread of the test process, and a sync way to call it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn

from asyncrl.sandbox import SandboxClient, SandboxPool
from asyncrl.sandbox.config import SandboxConfig
from asyncrl.sandbox.server import create_app


class ServiceThread:
    """`asyncrl sandbox serve` without the process: the same app and pool, on a free port."""

    def __init__(self, config: SandboxConfig, token: str | None = None, host: str = "127.0.0.1") -> None:
        self.config, self.token, self.host = config, token, host

    def __enter__(self) -> ServiceThread:
        app = create_app(SandboxPool(self.config), self.token)
        self.server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox service did not start; see the log above")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def call(self, method: str, *args: Any, token: str | None = None, **kwargs: Any) -> Any:
        """`SandboxClient(url).method(*args, **kwargs)`, run to completion."""
        return call(self.url, method, *args, token=token or self.token, **kwargs)


def call(url: str, method: str, *args: Any, token: str | None = None, **kwargs: Any) -> Any:
    async def go() -> Any:
        async with SandboxClient(url, token, busy_retries=0) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(go())
