"""What a sandbox is made of (the bwrap command line), and the checks before any is made."""

from __future__ import annotations

import os

import pytest

from asyncrl.sandbox import SandboxUnavailableError, isolation
from asyncrl.sandbox.config import SandboxConfig
from asyncrl.sandbox.isolation import HOST_ENV, bwrap_command, check_available, worker_command


def _pairs(args: list[str]) -> set[tuple[str, str]]:
    return set(zip(args, args[1:], strict=False))


def test_sandbox_unshares_everything_but_the_user_and_drops_capabilities():
    args = worker_command(SandboxConfig(), uid=1234567, seccomp_fd=5)
    for flag in ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--die-with-parent"):
        assert flag in args
    # A user namespace would map the program's uid onto root, for whom the kernel ignores RLIMIT_NPROC.
    assert "--unshare-user" not in args and "--unshare-all" not in args
    assert ("--cap-drop", "ALL") in _pairs(args) and ("--seccomp", "5") in _pairs(args)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--cap-add"] == ["CAP_SETUID", "CAP_SETGID"]
    assert args[-4:] == ["/usr/bin/python3", "-I", "/sandbox/worker.py", "1234567"]


def test_only_usr_is_mounted_from_the_host_and_read_only():
    args = bwrap_command(SandboxConfig(scratch_mb=64), ["python3"], seccomp_fd=3, warm=False)
    binds = [args[i + 1] for i, a in enumerate(args) if a in ("--bind", "--ro-bind", "--dev-bind")]
    assert "--bind" not in args and "--dev-bind" not in args
    assert set(binds) <= {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}
    assert ("--remount-ro", "/") in _pairs(args) and ("--size", str(64 << 20)) in _pairs(args)
    assert "--cap-add" not in args and "/sandbox/worker.py" not in args


def test_bwrap_starts_with_a_clean_environment():
    assert set(HOST_ENV) == {"PATH", "LANG"}


def test_missing_bubblewrap_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(isolation.HOST_ENV, "PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        check_available(SandboxConfig())


def test_running_as_another_user_than_root_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxUnavailableError, match="must run as root"):
        check_available(SandboxConfig())


def test_an_interpreter_outside_usr_is_a_clear_error(tmp_path):
    with pytest.raises(SandboxUnavailableError, match="not an interpreter under /usr"):
        check_available(SandboxConfig(python=str(tmp_path / "python3")))
