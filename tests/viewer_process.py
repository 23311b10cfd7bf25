"""`asyncrl view` in a subprocess on a free port of 127.0.0.1, waited for until it answers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import httpx
import pytest

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


def rendered_page(run_dir: str, profile: str, budget_ms: int = 8000, screenshot: str | None = None) -> str:
    """The DOM of `asyncrl view run_dir`'s page after its scripts ran `budget_ms` of virtual time, in
    headless Chromium (skipped where there is none); with `screenshot`, a PNG of it as well."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine (`make test` installs Debian's chromium where apt-get can)")
    process, url = start_viewer(run_dir)
    try:
        base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]  # fmt: skip
        dom = subprocess.run([*base, "--dump-dom", url + "/"], capture_output=True, text=True, timeout=120)
        if screenshot:
            shot = [*base, "--window-size=1400,1300", f"--screenshot={screenshot}", url + "/"]
            subprocess.run(shot, capture_output=True, timeout=120, check=True)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return dom.stdout
