"""The vLLM server as a managed child process: started, awaited until it serves, watched, stopped.

Its output is passed on to ours line by line (so it lands in `logs/inference.log`), and the last lines are
kept: when vLLM fails to start or dies, its own error is what the user sees.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TextIO

import httpx

from asyncrl.children import die_with_parent
from asyncrl.inference.vllm.launch import VLLMLaunch, VLLMProcessError

TAIL_LINES = 30
PORT_ATTEMPTS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMProcess:
    """One vLLM server on 127.0.0.1. `start()` returns once it answers /health."""

    def __init__(self, launch: VLLMLaunch, log: TextIO | None = None) -> None:
        self.launch = launch
        self.log = log
        """Where vLLM's output goes (default: this process's stdout); its tail is kept either way."""
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._reader: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        """Start vLLM and wait until it serves. Call it from the main thread: the child's parent-death
        signal fires when the thread that started it ends."""
        for _ in range(PORT_ATTEMPTS if not self.launch.port else 1):
            port = self.launch.port or _free_port()
            self.url = f"http://127.0.0.1:{port}"
            self._spawn([*self.launch.command, "--port", str(port)])
            if self._wait_ready():
                return
        raise VLLMProcessError(f"vLLM could not bind a port:\n{self.tail()}")

    def _spawn(self, command: list[str]) -> None:
        self._tail.clear()
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **self.launch.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            # Its own process group: stopping it also stops the engine-core and worker processes it forks.
            start_new_session=True,
            preexec_fn=die_with_parent,  # a killed server never leaves vLLM holding a GPU or the CPU
        )
        self._reader = threading.Thread(target=self._pass_output, args=(self.process,), daemon=True)
        self._reader.start()

    def _pass_output(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if "Route: " in line:  # a hundred lines listing its HTTP routes at every start
                continue
            self._tail.append(line.rstrip())
            log = self.log or sys.stdout
            log.write(line)
            log.flush()

    def _wait_ready(self) -> bool:
        """True once vLLM answers /health; False if its port was taken; raises if it dies or hangs."""
        deadline = time.monotonic() + self.launch.startup_timeout_s
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                if self._reader is not None:
                    self._reader.join(timeout=5)  # what the dead process left in the pipe
                if "address already in use" in self.tail().lower():
                    return False
                raise VLLMProcessError(f"vLLM exited during start-up (exit code {code}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise VLLMProcessError(
            f"vLLM was not serving after {self.launch.startup_timeout_s:.0f}s "
            f"(inference.vllm.startup_timeout_s):\n{self.tail()}"
        )

    def tail(self) -> str:
        return "\n".join(self._tail) or "(vLLM printed nothing)"

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def died(self) -> bool:
        """vLLM exited without being asked to."""
        return not self._stopping and self.exit_code() is not None

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL it when it lingers. Idempotent."""
        self._stopping = True
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        except ProcessLookupError:
            pass
        try:  # an engine-core or worker process that outlived vLLM's own shutdown
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
