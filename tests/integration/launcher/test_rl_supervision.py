"""`asyncrl rl` supervises its processes: each one killed mid-run is restarted (the trainer from its
checkpoint, the orchestrator from its last batch, the server given the newest weights; a restart that
fails is one more crash), the others run on, and the run ends as if nothing happened: every step trained
once, the restarts on record."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from asyncrl.inference.server_process import free_port
from asyncrl.transport.metrics import read_metrics
from tests.integration.launcher.test_rl import SMALL


def _pid(run, name: str) -> int:
    pattern = f"asyncrl.cli {name} -c {run / 'logs' / name}.toml"
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    assert len(found) == 1, (name, found)
    return int(found[0])


def _trained(run) -> int:
    steps = [m["step"] for m in read_metrics(run, "trainer")]
    return steps[-1] if steps else 0


def _hold_port_through_one_start(port: int, log) -> threading.Thread:
    """Take `port` as soon as the killed server lets go of it, and keep it until a new server has failed
    to bind it."""

    def hold() -> None:
        with socket.socket() as holder:
            # Past the killed server's connections in TIME_WAIT, as the server's own bind gets past them.
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            while True:
                try:
                    holder.bind(("127.0.0.1", port))
                    break
                except OSError:
                    time.sleep(0.01)
            holder.listen()
            while log.read_text().count("address already in use") == 0:
                time.sleep(0.1)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_each_killed_process_is_restarted_and_every_step_is_trained_once(tmp_path):
    run = tmp_path / "run"
    port = free_port()
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "--inference.port", str(port), *SMALL,
               "--output-dir", str(run), "--max-steps", "16", "--trainer.checkpoint.interval", "2",
               "--launcher.restart-backoff-s", "0.5"]  # fmt: skip
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    for name, after in (("trainer", 3), ("inference", 7), ("orchestrator", 11)):
        while _trained(run) < after:
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
            time.sleep(0.1)
        os.kill(_pid(run, name), signal.SIGKILL)
        if name == "inference":  # its first restart finds the port taken
            holder = _hold_port_through_one_start(port, run / "logs" / "inference.log")
    _, stderr = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, stderr[-3000:]
    assert not holder.is_alive()

    assert [m["step"] for m in read_metrics(run, "trainer")] == list(range(1, 17))
    assert [m["step"] for m in read_metrics(run, "orchestrator")] == list(range(1, 17))
    events = read_metrics(run, "launcher")
    assert events[0]["event"] == "start"
    assert [(e["process"], e["exit_code"] == -9, e["restart"]) for e in events[1:]] == [
        ("trainer", True, 1),
        ("inference", True, 1),
        ("inference", False, 2),  # the restart that found its port taken
        ("orchestrator", True, 1),
    ]
    assert "the inference server could not bind a port" in stderr
    for name in ("trainer", "inference", "orchestrator"):
        assert f"the {name} process stopped (killed by SIGKILL)" in stderr
        assert "restarting it" in (run / "logs" / f"{name}.log").read_text()
    # The restarted trainer resumed from a checkpoint rather than from scratch; the restarted server
    # was given the newest weights before it took work again.
    assert "resumed from the checkpoint of step" in (run / "logs" / "trainer.log").read_text()
    server_log = (run / "logs" / "inference.log").read_text()
    restarted = server_log[server_log.index("restarting it") :]
    assert "swapped in" in restarted
    assert "is back; it takes work again" in (run / "logs" / "orchestrator.log").read_text()


def _gone(pid: int) -> bool:
    """Exited (a zombie no one has reaped yet counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_a_launcher_killed_outright_takes_its_processes_with_it(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "--inference.port", str(free_port()), *SMALL,
               "--output-dir", str(run), "--max-steps", "10000"]  # fmt: skip
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while _trained(run) < 1:
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[1][-3000:]
        time.sleep(0.1)
    children = {name: _pid(run, name) for name in ("inference", "trainer", "orchestrator")}
    launcher.kill()  # SIGKILL: it gets no chance to stop them itself
    launcher.wait()
    deadline = time.monotonic() + 60
    while not all(map(_gone, children.values())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {name: _gone(pid) for name, pid in children.items()} == dict.fromkeys(children, True)
