"""Shared fixtures: an isolated model cache and real inference servers in subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT_S = 180


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test builds and reads the tiny model in its own cache, never the user's."""
    cache = tmp_path_factory.mktemp("asyncrl-cache")
    os.environ["ASYNCRL_CACHE_DIR"] = str(cache)
    return cache


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`asyncrl inference` running in a subprocess, with its log kept for failure messages."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "asyncrl.cli",
            "inference",
            "--inference.port",
            str(self.port),
            *args,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_S}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    from asyncrl.models import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture()
def start_server(tmp_path: Path, tiny_dir: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `asyncrl inference` with the given options; every server started is stopped afterwards."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        started.append(ServerProcess(tmp_path / f"server{len(started)}.log", *args))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Iterator[ServerProcess]:
    """One tiny-model server shared by a test module (tests that change weights start their own)."""
    proc = ServerProcess(tmp_path_factory.mktemp("server") / "server.log", "--model.path", "tiny")
    yield proc
    proc.stop()
