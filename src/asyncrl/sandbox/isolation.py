"""The bubblewrap command line of a sandbox, and the checks that one can be made on this machine.

A sandbox has its own pid, IPC, UTS, network (loopback only) and cgroup namespaces; sees the host's
/usr read-only and nothing else of the host's files; writes only to its private tmpfs /tmp and /dev/shm;
starts with all capabilities dropped (a warm sandbox's worker keeps CAP_SETUID and CAP_SETGID, to drop
each execution to the sandbox's own uid); runs under the seccomp filter of `seccomp.py`; and dies with
the process that started it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

from asyncrl.sandbox.config import SandboxConfig
from asyncrl.sandbox.errors import SandboxUnavailableError
from asyncrl.sandbox.seccomp import filter_program

WORKER_SOURCE = Path(__file__).with_name("worker.py")
WORKER_PATH = "/sandbox/worker.py"
# The whole environment bwrap starts with. Its pid 1 inside the sandbox keeps it, readable through /proc,
# so none of this process's variables (tokens, keys) may reach it.
HOST_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
# Each warm sandbox runs its programs under a uid of its own from this range (no host account uses it),
# so the kernel counts RLIMIT_NPROC per sandbox.
FIRST_UID, UID_SPAN = 1_000_000, 1 << 24
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
INSTALL_HINT = "install it with `apt-get install bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap`"


def sandbox_uid() -> int:
    return FIRST_UID + random.randrange(UID_SPAN)


def bwrap_command(config: SandboxConfig, command: list[str], seccomp_fd: int, warm: bool) -> list[str]:
    """bwrap running `command` in a new sandbox. `warm`: the command is the worker, which keeps the
    capabilities to switch uid and finds its source at WORKER_PATH."""
    bwrap = shutil.which("bwrap", path=HOST_ENV["PATH"]) or "bwrap"
    scratch = str(config.scratch_mb << 20)
    args = [
        bwrap,
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname", "sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        *(["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if warm else []),
        "--seccomp", str(seccomp_fd),
        *system_mounts(),
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "1777", "--size", scratch, "--tmpfs", "/tmp",
        "--perms", "1777", "--size", scratch, "--tmpfs", "/dev/shm",
        "--mqueue", "/dev/mqueue",
        *(["--ro-bind", str(WORKER_SOURCE), WORKER_PATH] if warm else []),
        # The worker's interpreter resolves all its symbols at start, so that no child forked from it does:
        # each lazy resolution writes to the symbol table, a copy-on-write fault the child pays for.
        *(["--setenv", "LD_BIND_NOW", "1"] if warm else []),
        "--remount-ro", "/",
        "--chdir", "/tmp",
        "--",
        *command,
    ]  # fmt: skip
    return args


def worker_command(config: SandboxConfig, uid: int, seccomp_fd: int) -> list[str]:
    return bwrap_command(config, [config.python, "-I", WORKER_PATH, str(uid)], seccomp_fd, warm=True)


def system_mounts() -> list[str]:
    """/usr read-only, and the top-level links into it (or directories, on systems without merged /usr)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for path in ROOT_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("/etc/ld.so.cache", "/etc/alternatives"):
        args += ["--ro-bind-try", path, path]
    return args


def seccomp_fd() -> int:
    """A pipe holding the seccomp filter, for bwrap's --seccomp; the caller closes it after the spawn."""
    read, write = os.pipe()
    os.write(write, filter_program())
    os.close(write)
    return read


def check_available(config: SandboxConfig) -> None:
    """Raise SandboxUnavailableError, saying what to do, unless sandboxes can be made here."""
    if shutil.which("bwrap", path=HOST_ENV["PATH"]) is None:
        raise SandboxUnavailableError(
            f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}. Code is never run without a sandbox"
        )
    if os.geteuid() != 0:
        raise SandboxUnavailableError(
            "the sandbox service must run as root: every execution runs under a uid of its own, which only "
            "root can switch to (and the kernel enforces process limits only for non-root uids). Run "
            "`asyncrl sandbox serve` as root (in a container or VM of its own) and pass its --url"
        )
    python = os.path.realpath(config.python)
    if not python.startswith("/usr/") or not os.access(python, os.X_OK):
        raise SandboxUnavailableError(
            f"sandbox.python {config.python!r} is not an interpreter under /usr, the only host directory "
            "a sandbox sees; install python3 there or point sandbox.python at one"
        )
    probe = [config.python, "-I", "-c", ""]
    fd = seccomp_fd()
    try:
        done = subprocess.run(
            bwrap_command(config, probe, fd, warm=False),
            env=HOST_ENV,
            pass_fds=(fd,),
            capture_output=True,
            timeout=60,
        )
    finally:
        os.close(fd)
    if done.returncode != 0:
        raise SandboxUnavailableError(
            f"bubblewrap could not make a sandbox: {done.stderr.decode(errors='replace').strip()}. It needs "
            "mount, pid and network namespaces: in a container, allow them (e.g. run it privileged)"
        )
