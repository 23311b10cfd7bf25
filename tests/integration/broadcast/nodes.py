"""Shardcast nodes for tests: in a thread of the test process (fast), or as `asyncrl broadcast serve`
subprocesses (to kill them); and weights dirs to publish."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from safetensors.numpy import save_file

from asyncrl.broadcast.config import BroadcastServeConfig
from asyncrl.broadcast.server import NodeServer, build_node, create_app
from asyncrl.broadcast.store import VersionStore
from asyncrl.inference.server_process import stop_process


def write_step(weights_dir: Path, step: int, tensors: dict[str, np.ndarray], stable: bool = True) -> Path:
    """weights/step_<step>/ as the trainer writes it: a safetensors file, a config, STABLE last."""
    directory = weights_dir / f"step_{step}"
    directory.mkdir(parents=True)
    save_file(tensors, str(directory / "model.safetensors"))
    (directory / "config.json").write_text('{"model_type": "test"}')
    if stable:
        (directory / "STABLE").touch()
    return directory


def random_tensors(seed: int, size: int = 200_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.standard_normal(size, np.float32), "b.bias": rng.standard_normal(999, np.float32)}


def nudged(tensors: dict[str, np.ndarray], scale: float = 1e-4, seed: int = 99) -> dict[str, np.ndarray]:
    """Every value moved a little, as an optimizer step moves weights."""
    rng = np.random.default_rng(seed)
    return {
        k: (v + rng.standard_normal(v.shape, np.float32) * scale).astype(np.float32)
        for k, v in tensors.items()
    }


def copy_step(source: Path, weights_dir: Path, step: int) -> Path:
    """An HF dir (a model) published as weights/step_<step>/."""
    directory = weights_dir / f"step_{step}"
    shutil.copytree(source, directory)
    (directory / "STABLE").touch()
    return directory


def same_files(a: Path, b: Path) -> bool:
    """True when the HF dirs hold the same files, byte for byte (markers and manifests aside)."""

    def files(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and p.name not in ("STABLE", ".shardcast.json")
        }

    return files(a) == files(b)


def wait_until(condition: Any, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class AppThread:
    """An ASGI app served by uvicorn on a free port of 127.0.0.1, in a thread of the test process."""

    def __init__(self, app: Any, store: VersionStore | None = None) -> None:
        self.app, self._store = app, store

    def __enter__(self) -> AppThread:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config) if self._store is None else NodeServer(config, self._store)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 30, "the server to start")
        assert self.server.started, "the server did not start"
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class NodeThread(AppThread):
    """`asyncrl broadcast serve` without the process: the same app, on a free port of 127.0.0.1."""

    def __init__(self, **settings: Any) -> None:
        self.config = BroadcastServeConfig(port=0, **settings)
        self.store, node = build_node(self.config, 0)
        super().__init__(create_app(self.store, node, self.config), self.store)

    def wait_for_version(self, version: int, timeout: float = 60) -> None:
        wait_until(lambda: version in self.store.versions(), timeout, f"version {version} on {self.url}")

    def stats(self, token: str | None = None) -> dict[str, Any]:
        return node_stats(self.url, token)


def node_stats(url: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{url}/stats", headers=headers, timeout=10).json()


class NodeProcess:
    """`asyncrl broadcast serve ARGS --port 0` in a subprocess; `url` is read from its log."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.command = [sys.executable, "-m", "asyncrl.cli", "broadcast", "serve", "--port", "0", *args]
        self.log_path = log_path

    def __enter__(self) -> NodeProcess:
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            found = re.search(r"serving on (http://[\d.]+:\d+)", self.log_path.read_text())
            if found:
                self.url = found.group(1)
                break
            assert self.process.poll() is None, f"the node exited:\n{self.log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, (
                f"the node did not start:\n{self.log_path.read_text()[-2000:]}"
            )
            time.sleep(0.05)
        wait_until(self._healthy, 60, "the node's /health")
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).json()["pid"] == self.process.pid
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def versions(self) -> list[int]:
        return httpx.get(f"{self.url}/health", timeout=5).json()["versions"]

    def wait_for_version(self, version: int, timeout: float = 120) -> None:
        wait_until(lambda: version in self.versions(), timeout, f"version {version} on {self.url}")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)
        self._log.close()


def stored_files(store: VersionStore | Path, version: int) -> Path:
    """The HF dir of `version` inside a node's data dir."""
    root = store.root if isinstance(store, VersionStore) else Path(store)
    return root / f"v_{version}" / "files"
