"""The built-in inference server as a child process, for commands that need a model behind a URL."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from asyncrl.config import InferenceConfig, ModelConfig


class ServerStartError(Exception):
    """The inference server exited or never became healthy; the message holds its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InferenceServerProcess:
    """`asyncrl inference` on 127.0.0.1, started on enter, stopped on exit."""

    def __init__(self, model: ModelConfig, inference: InferenceConfig, seed: int, log_path: Path) -> None:
        self.port = inference.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.command = [sys.executable, "-m", "asyncrl.cli", "inference", "--model.path", model.path,
                        "--model.dtype", model.dtype, "--seed", str(seed), "--inference.port", str(self.port),
                        "--inference.max-num-seqs", str(inference.max_num_seqs),
                        "--inference.num-threads", str(inference.num_threads)]  # fmt: skip

    def __enter__(self) -> InferenceServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_healthy(timeout_s=300)
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.__exit__()
                raise ServerStartError(f"the inference server exited:\n{self._tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise ServerStartError(
            f"the inference server was not healthy after {timeout_s:.0f}s:\n{self._tail()}"
        )

    def _tail(self) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-20:])

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()
