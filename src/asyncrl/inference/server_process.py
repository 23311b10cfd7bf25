"""The built-in inference server as a child process, for commands that need a model behind a URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from asyncrl.children import die_with_parent
from asyncrl.config import ModelConfig
from asyncrl.config_loader import to_toml
from asyncrl.errors import UserError
from asyncrl.inference.config import ADMIN_KEY_ENV, API_KEY_ENV, InferenceConfig, InferenceServerConfig


class ServerStartError(UserError):
    """The inference server exited or never became healthy; the message holds its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InferenceServerProcess:
    """`asyncrl inference` on 127.0.0.1, started on enter, stopped on exit."""

    def __init__(
        self,
        model: ModelConfig,
        inference: InferenceConfig,
        seed: int,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.model, self.inference, self.seed = model, inference, seed
        self.log_path = log_path
        # The keys travel in the server's environment: the config file written for it leaves them out.
        keys = {API_KEY_ENV: inference.api_key, ADMIN_KEY_ENV: inference.admin_key}
        extra = {**(env or {}), **{name: key for name, key in keys.items() if key}}
        self.env = {**os.environ, **extra} if extra else None
        self._log_mode = "w"

    def __enter__(self) -> InferenceServerProcess:
        self.start()
        return self.wait_ready()

    def start(self) -> InferenceServerProcess:
        """Start the process without waiting for it (`url` is known at once); then `wait_ready`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._attempts = 1 if self.inference.port else 3
        self._spawn()
        return self

    def wait_ready(self) -> InferenceServerProcess:
        """Wait until the server answers /health. A port picked free can be taken by another process
        before the server binds it: it then starts again on another port (`url` changes)."""
        while not self._wait_healthy(timeout_s=300):
            self._attempts -= 1
            if not self._attempts:
                raise ServerStartError(f"the inference server could not bind a port:\n{self._tail()}")
            self._spawn()
        return self

    def _spawn(self) -> None:
        self.port = self.inference.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = InferenceServerConfig(
            seed=self.seed, model=self.model, inference=self.inference.model_copy(update={"port": self.port})
        )
        config_path = self.log_path.with_suffix(".toml")
        config_path.write_text(to_toml(config))
        self._log = open(self.log_path, self._log_mode)  # noqa: SIM115 - closed in __exit__
        command = [sys.executable, "-m", "asyncrl.cli", "inference", "-c", str(config_path)]
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, preexec_fn=die_with_parent
        )

    def _wait_healthy(self, timeout_s: float) -> bool:
        """True once this very process answers /health; False if its port was taken."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.__exit__()
                if "address already in use" in self.log_path.read_text():
                    return False
                raise ServerStartError(f"the inference server exited:\n{self._tail()}")
            try:
                health = httpx.get(f"{self.url}/health", timeout=2)
                if health.status_code == 200 and health.json().get("pid") == self.process.pid:
                    return True
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        self.__exit__()
        raise ServerStartError(
            f"the inference server was not healthy after {timeout_s:.0f}s:\n{self._tail()}"
        )

    @contextmanager
    def launched(self) -> Iterator[InferenceServerProcess]:
        """Started on entry without waiting for it (call `wait_ready`), stopped on exit."""
        self.start()
        try:
            yield self
        finally:
            self.__exit__()

    def restart(self) -> None:
        """Stop the server if it still runs and start it again on the same port, its log continued."""
        self.__exit__()
        self.inference = self.inference.model_copy(update={"port": self.port})
        self._log_mode = "a"
        self.__enter__()

    def _tail(self) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-20:])

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)
        self._log.close()


def stop_process(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """Terminate `process` if it still runs; kill it when it has not ended after `timeout_s`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
