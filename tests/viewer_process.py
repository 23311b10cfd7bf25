"""`asyncrl view` in a subprocess on a free port of 127.0.0.1, waited for until it answers."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from asyncrl.inference.server_process import free_port


def start_viewer(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "asyncrl.cli", "view", *args, "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(url + "/api/run", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"asyncrl view did not start: {process.communicate()}")
