"""Hostile programs, each contained in a specific way, with the service healthy and clean afterwards.

The service has one warm sandbox (see conftest), so the check after each test runs in the very sandbox
the hostile program used."""

from __future__ import annotations

import errno
import platform
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncrl.sandbox import Result
from tests.integration.sandbox.conftest import LIMITS, SECRET
from tests.integration.sandbox.service import ServiceThread

# Every process of the program's uid other than the census itself, and what is left in the writable dirs.
CENSUS = """
import os
others = []
for pid in os.listdir('/proc'):
    if pid.isdigit() and int(pid) != os.getpid():
        with open(f'/proc/{pid}/status') as f:
            if int(f.read().split('Uid:')[1].split()[0]) != 0:
                others.append(pid)
print(others, sorted(os.listdir('/tmp')), sorted(os.listdir('/dev/shm')))
"""


def run(service: ServiceThread, code: str, **kwargs: object) -> Result:
    return service.call("execute", code, **kwargs)


@pytest.fixture(autouse=True)
def service_stays_healthy_and_clean(service: ServiceThread) -> Iterator[None]:
    yield
    health = service.call("health")
    assert health["status"] == "ok" and health["idle"] == 1
    census = run(service, CENSUS)
    assert census.stdout == "[] ['main.py'] []\n", census


def test_fork_bomb_is_stopped_at_the_timeout(service):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run(service, bomb, timeout=1)
    assert result.timed_out and result.exit_code == -signal.SIGKILL
    assert result.duration_s < 2.5


def test_process_limit_holds_for_the_programs_uid(service):
    forker = """
import os, time
started = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        started += 1
except OSError as e:
    print('refused after', started, e.errno)
"""
    result = run(service, forker, limits={"max_processes": 8})
    words = result.stdout.split()
    assert words[:2] == ["refused", "after"], result
    assert int(words[2]) == 7 and int(words[3]) == errno.EAGAIN  # 8 processes: itself and 7 children


def test_infinite_loop_is_killed_at_the_timeout(service):
    result = run(service, "while True:\n    pass\n", timeout=0.5)
    assert result.timed_out and result.exit_code == -signal.SIGKILL
    assert 0.5 <= result.duration_s < 2


def test_cpu_limit_kills_a_busy_program_before_the_timeout(service):
    result = run(service, "while True:\n    pass\n", timeout=10, limits={"cpu_s": 1})
    assert not result.timed_out and result.exit_code == -signal.SIGXCPU
    assert result.duration_s < 5


def test_memory_hog_runs_out_of_its_own_memory(service):
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
    result = run(service, hog, limits={"memory_mb": 128})
    assert result.oom_killed and result.exit_code == 1
    assert result.stderr.rstrip().endswith("MemoryError")


def test_writes_outside_the_scratch_dir_fail(service):
    writer = """
import errno
for path in ('/usr/planted', '/etc/planted', '/planted', '/sandbox/worker.py', '/proc/sys/kernel/hostname'):
    try:
        with open(path, 'w') as f:
            f.write('x')
        print(path, 'WRITTEN')
    except OSError as e:
        print(path, errno.errorcode[e.errno])
with open('/tmp/fine.txt', 'w') as f:
    f.write('x')
print('scratch ok')
"""
    lines = run(service, writer).stdout.splitlines()
    assert lines[0] == "/usr/planted EROFS" and lines[2] == "/planted EROFS"
    assert not any("WRITTEN" in line for line in lines)
    assert lines[-1] == "scratch ok"


def test_host_files_are_not_there(service, tmp_path: Path):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    repo_file = Path(__file__).resolve()
    paths = [str(secret_file), str(repo_file), "/etc/shadow", "/etc/passwd", "/root", "/home", "/work"]
    reader = f"import os\nfor path in {paths!r}:\n    print(os.path.exists(path))\n"
    assert run(service, reader).stdout.split() == ["False"] * 7


def test_environment_of_the_host_does_not_reach_the_program(service):
    snooper = """
import os
for pid in sorted(os.listdir('/proc')):
    if pid.isdigit():
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                print(pid, f.read())
        except PermissionError:
            print(pid, 'denied')
print(dict(os.environ))
"""
    result = run(service, snooper)
    assert "1 denied" in result.stdout  # bwrap's pid 1 belongs to root
    assert SECRET not in result.stdout and "ASYNCRL_TEST_SECRET" not in result.stdout


def test_network_is_unreachable(service):
    port = service.url.rsplit(":", 1)[1]
    prober = f"""
import socket
for host, port in (('1.1.1.1', 53), ('127.0.0.1', {port})):
    try:
        socket.create_connection((host, port), timeout=2)
        print(host, 'CONNECTED')
    except OSError as e:
        print(host, type(e).__name__)
try:
    socket.getaddrinfo('example.com', 80)
    print('dns RESOLVED')
except OSError as e:
    print('dns', type(e).__name__)
"""
    lines = run(service, prober).stdout.splitlines()
    assert lines == ["1.1.1.1 OSError", "127.0.0.1 ConnectionRefusedError", "dns gaierror"]


def test_a_gigabyte_of_output_is_cut_at_the_cap(service):
    printer = "import sys\nchunk = 'x' * 65536\nfor _ in range(16384):\n    sys.stdout.write(chunk)\n"
    result = run(service, printer, timeout=20)
    assert result.output_truncated and not result.timed_out
    assert len(result.stdout) == LIMITS.max_output_bytes
    assert result.duration_s < 5


def test_killing_its_parent_is_refused(service):
    killer = """
import os, signal
for pid in (os.getppid(), 1):
    try:
        os.kill(pid, signal.SIGKILL)
        print(pid, 'KILLED')
    except PermissionError:
        print(pid, 'refused')
os.kill(-1, signal.SIGKILL)  # everything it may signal: nothing but its own processes
print('still here')
"""
    result = run(service, killer)
    assert result.stdout.split("\n")[:3] == ["2 refused", "1 refused", "still here"], result


def test_background_processes_are_gone_after_the_execution(service):
    spawner = """
import os, subprocess, time
subprocess.Popen(['sleep', '60'])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1)
        with open('/tmp/late.txt', 'w') as f:
            f.write('still running')
    os._exit(0)
print('started')
"""
    result = run(service, spawner)
    assert result.stdout == "started\n" and result.duration_s < 1
    time.sleep(1.5)  # past the moment the daemon would have written its file
    assert run(service, "import os\nprint(os.path.exists('/tmp/late.txt'))").stdout == "False\n"


def test_sleeping_past_the_timeout_is_killed(service):
    result = run(service, "import time\ntime.sleep(30)\n", timeout=0.5)
    assert result.timed_out and result.duration_s < 2


def test_namespaces_keyrings_and_capabilities_are_out_of_reach(service):
    add_key = {"x86_64": 248, "aarch64": 217}[platform.machine()]
    escaper = f"""
import ctypes, errno, threading
libc = ctypes.CDLL(None, use_errno=True)
print(libc.unshare(0x10000000), errno.errorcode[ctypes.get_errno()])
print(libc.syscall({add_key}, b'user', b'k', b'v', 1, -3), errno.errorcode[ctypes.get_errno()])
with open('/proc/self/status') as f:
    print([line.split()[1] for line in f if line.startswith(('CapEff', 'CapPrm', 'CapInh', 'NoNewPrivs'))])
thread = threading.Thread(target=print, args=('threads work',))
thread.start()
thread.join()
"""
    lines = run(service, escaper).stdout.splitlines()
    assert lines[:2] == ["-1 EPERM", "-1 EPERM"]
    assert lines[2] == str(["0000000000000000"] * 3 + ["1"])
    assert lines[3] == "threads work"
