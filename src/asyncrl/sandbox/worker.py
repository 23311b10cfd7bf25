"""The warm interpreter inside one sandbox: it forks a fresh child for every execution.

bwrap starts this file with the sandbox's python3 (`python3 -I /sandbox/worker.py UID`), so it uses the
standard library only and never imports asyncrl. It runs as root inside the sandbox with two capabilities
left, CAP_SETUID and CAP_SETGID, and never runs submitted code itself: each execution is a child forked
from this pristine interpreter that drops to UID, the sandbox's own unprivileged uid, before it touches
the code. Being another uid, the child cannot signal, trace or read this process, and the kernel enforces
RLIMIT_NPROC on it (it does not for uid 0).

After the child exits, everything it left behind is removed before the next execution: processes (this
process is their subreaper, so every one of them is its descendant) and files in the writable directories
(SysV IPC objects, which would outlive it too, the seccomp filter does not let it create). If anything
cannot be removed the result says so, and the pool replaces the sandbox.

Every page a forked child writes, and every page this process writes while a child shares it, costs a
copy-on-write fault; those faults and the fork itself are most of what an execution costs. So what can be
done once is done here before the first fork, and the code on both sides of a fork does as little as it can.

Protocol on the fds it was started with (0 in, 1 out): frames of a 4-byte big-endian length and a UTF-8
JSON object. The first frame out is {"ready": true}; then one result frame per request frame, in order.
Requests may arrive before the previous one is answered; after an answer that is not "reusable", this
process exits without reading more.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import gc
import json
import os
import resource
import select
import signal
import struct
import sys
import time
import types
from collections.abc import Callable

SCRATCH = "/tmp"
MAIN = "/tmp/main.py"
WRITABLE = ("/tmp", "/dev/shm", "/dev/mqueue")
PROGRAM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": SCRATCH, "TMPDIR": SCRATCH, "LANG": "C.UTF-8"}
# Imported once here so that executions, forked from this interpreter, find them already loaded. Only
# modules programs commonly use, and none that is heavy for how rarely it is: every megabyte in this
# interpreter costs every execution ~5% more (more page tables to copy, more pages a child touches), so
# not `dataclasses` (with `inspect`, `ast` and `dis`, 1.3 MB); nor `random` (or `statistics`, which imports
# it), which reseeds itself in every forked child. A program that uses one imports it as it would anyway.
PRELOAD = (
    "bisect", "collections", "decimal", "fractions", "functools", "heapq", "itertools", "json", "math",
    "re", "string", "typing",
)  # fmt: skip
STATUS_FD = 3
OOM_MARK = b"M"
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36
CAPABILITY_VERSION_3 = 0x20080522
CAP_SETGID, CAP_SETUID = 6, 7
CHUNK = TRIM_ABOVE = 1 << 16
MAX_FD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

libc = ctypes.CDLL(None, use_errno=True)
# Resolved once here rather than in every forked child: each first use allocates, and every page a child
# writes is a copy-on-write fault it pays for (most of what an execution costs).
prctl = libc.prctl


def main() -> None:
    uid = int(sys.argv[1])
    keep_only_uid_switching()
    # Orphans of an execution are re-parented here rather than to pid 1, so they can all be found.
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # What every program starts with, set here once for all of them.
    os.environ.clear()
    os.environ.update(PROGRAM_ENV)
    os.umask(0o022)
    os.chdir(SCRATCH)
    inbox, outbox = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    for name in PRELOAD:
        __import__(name)
    empty_sizes = sizes_when_empty()
    prepare_main()
    warm_up()
    # Out of the collector's sight from now on, so that no collection in a child writes to (and so copies)
    # every page holding an object.
    gc.freeze()
    send(outbox, {"ready": True})
    while (request := receive(inbox)) is not None:
        execution = Execution(request)
        pid = os.fork()
        if pid == 0:
            execution.become_program(uid)
        result = execution.collect(pid, uid, empty_sizes)
        send(outbox, result)
        if not result["reusable"]:
            return  # the pool replaces this sandbox: requests already sent must not run in it
        if size_of(request, result) > TRIM_ABOVE:
            # Holding big texts grew the heap, and it would stay grown: every later fork would copy it.
            libc.malloc_trim(0)


def size_of(request: dict, result: dict) -> int:
    """Characters of the texts in an execution's request and result."""
    inputs = (request["code"] or "", request["stdin"], *request["files"].values())
    return sum(map(len, (*inputs, result["stdout"], result["stderr"])))


def keep_only_uid_switching() -> None:
    """Keep CAP_SETUID and CAP_SETGID, and empty the inheritable set that bwrap's --cap-add filled (and with
    it the ambient set, never more than the inheritable one): a child that then leaves uid 0 has no
    capability left, without a capset of its own."""
    keep = (1 << CAP_SETUID) | (1 << CAP_SETGID)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    sets = (ctypes.c_uint32 * 6)(keep, keep, 0, 0, 0, 0)  # effective, permitted, inheritable; then caps 32-63
    if libc.capset(header, sets) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def prepare_main() -> None:
    """What `python3 /tmp/main.py` starts with, made once here rather than by every child: an empty
    __main__ module and its argv. (The scratch dir joins sys.path only in the child: this process, root,
    must never import from a directory programs write to.)"""
    main_module = types.ModuleType("__main__")
    main_module.__file__ = MAIN
    sys.modules["__main__"] = main_module
    sys.argv = [MAIN]


def warm_up() -> None:
    """Take, once here, the first steps every program takes, which set things up on first use (compile()
    builds the AST types, a few hundred objects) so that no child has to. Stdin and stdout are /dev/null."""
    compile("", MAIN, "exec")
    sys.stdin.readline()
    print(end="", flush=True)


class Execution:
    def __init__(self, request: dict) -> None:
        self.request = request
        self.max_output = request["limits"]["max_output_bytes"]
        # Worked out here, before the fork, so that the child has less to do (and to copy).
        self.rlimits = rlimits(request["limits"])
        self.stdin = os.memfd_create("stdin")
        if request["stdin"]:
            # At offset 0, which leaves the file position at the start for the program.
            os.pwrite(self.stdin, request["stdin"].encode(), 0)
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        self.status_r, self.status_w = os.pipe()
        self.program_fds = (self.stdin, self.out_w, self.err_w, self.status_w)  # its fds 0 to 3
        self.truncated = False
        self.started = time.monotonic()

    # ---------------------------------------------------------------------------------------------------
    # In the child: become the program. Never returns.

    def become_program(self, uid: int) -> None:
        try:
            for target, fd in enumerate(self.program_fds):
                os.dup2(fd, target)
            os.closerange(STATUS_FD + 1, MAX_FD)
            drop_to(uid)
            # Changing uid made the process undumpable, which gives its /proc files to root; the program
            # should see its own /proc entries as any program does.
            prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
            for kind, limit in self.rlimits:
                resource.setrlimit(kind, limit)
            if self.request["files"]:
                write_files(self.request["files"])
            if self.request["command"]:
                exec_command(self.request["command"])
            run_code(self.request["code"])
        except BaseException:
            sys.excepthook(*sys.exc_info())
            os._exit(126)

    # ---------------------------------------------------------------------------------------------------
    # In this process: wait for the child, keep its output, then remove everything it left.

    def collect(self, pid: int, uid: int, empty_sizes: dict[str, int] | None) -> dict:
        for fd in self.program_fds:
            os.close(fd)
        output = {self.out_r: bytearray(), self.err_r: bytearray()}
        exited, timed_out = self.wait(pid, output)
        duration = time.monotonic() - self.started
        exit_code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) if exited else -signal.SIGKILL
        # Anything still running dies here. Once all of it is gone, no write end of the pipes is left open,
        # so reading them cannot block; if some of it cannot be removed, what was read so far must do.
        clean = remove_processes(uid)
        if clean:
            self.drain(output)
        oom = clean and os.read(self.status_r, 1) == OOM_MARK
        for fd in (self.out_r, self.err_r, self.status_r):
            os.close(fd)
        return {
            "stdout": output[self.out_r].decode("utf-8", "replace"),
            "stderr": output[self.err_r].decode("utf-8", "replace"),
            "exit_code": exit_code,
            "timed_out": timed_out,
            "oom_killed": oom,
            "output_truncated": self.truncated,
            "duration_s": duration,
            "reusable": remove_files(uid, empty_sizes) and clean,
        }

    def wait(self, pid: int, output: dict[int, bytearray]) -> tuple[bool, bool]:
        """Keep the child's output until it exits. (exited, timed out): neither when cut at the output cap."""
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in (*output, pidfd):
            poller.register(fd, select.POLLIN)
        deadline = self.started + self.request["timeout"]
        try:
            while not self.truncated:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return False, True
                for fd, _ in poller.poll(int(wait * 1000) + 1):
                    if fd == pidfd:
                        return True, False
                    if not self.read(fd, output[fd]):
                        poller.unregister(fd)
            return False, False
        finally:
            os.close(pidfd)

    def read(self, fd: int, buffer: bytearray) -> bool:
        """Keep up to the output cap of what `fd` has; False at end-of-file."""
        data = os.read(fd, CHUNK)
        room = self.max_output - len(buffer)
        buffer += data[:room]
        if len(data) > room:
            self.truncated = True
        return bool(data)

    def drain(self, output: dict[int, bytearray]) -> None:
        """Read the pipes to their end (or to the output cap): their writers are all gone."""
        for fd, buffer in output.items():
            while not self.truncated and self.read(fd, buffer):
                pass


# -------------------------------------------------------------------------------------------------------
# The child's set-up.


def drop_to(uid: int) -> None:
    """Become `uid` for good. With no uid left at 0, the kernel empties the permitted, effective and ambient
    capability sets; the inheritable one is empty already (keep_only_uid_switching)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def rlimits(limits: dict) -> list[tuple[int, tuple[int, int]]]:
    """The program's resource limits, as setrlimit takes them."""
    mib = 1 << 20
    cpu = limits["cpu_s"]
    return [
        # At the soft CPU limit the kernel sends SIGXCPU (the program dies of it); a second later, SIGKILL.
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (limits["memory_mb"] * mib,) * 2),
        (resource.RLIMIT_NPROC, (limits["max_processes"],) * 2),
        (resource.RLIMIT_FSIZE, (limits["max_file_mb"] * mib,) * 2),
        (resource.RLIMIT_NOFILE, (limits["max_open_files"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ]


def write_files(files: dict[str, str]) -> None:
    for path, text in files.items():
        # The pool checked the paths already; as the program's uid, a bad one could not escape anyway.
        target = os.path.normpath(os.path.join(SCRATCH, path))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)


def exec_command(argv: list[str]) -> None:
    os.close(STATUS_FD)
    # Python ignores these; programs it starts expect the defaults (as subprocess restores them).
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(argv[0], argv, PROGRAM_ENV)
    except OSError as e:
        os.write(2, f"{argv[0]}: {e.strerror}\n".encode())
        os._exit(127 if e.errno == errno.ENOENT else 126)


def run_code(code: str) -> None:
    """Run `code` as `python3 /tmp/main.py` would, in this already warm interpreter (see prepare_main)."""
    fd = os.open(MAIN, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, code.encode())
    os.close(fd)
    sys.path.insert(0, SCRATCH)
    try:
        exec(compile(code, MAIN, "exec"), sys.modules["__main__"].__dict__)
        status = 0
    except SystemExit as e:
        status = exit_status(e.code)
    except BaseException as e:
        if isinstance(e, MemoryError):
            os.write(STATUS_FD, OOM_MARK)
        # Reported as the interpreter reports an uncaught exception, minus this frame, so that the traceback
        # reads as the program's own.
        e.__traceback__ = e.__traceback__.tb_next if e.__traceback__ else None
        sys.excepthook(type(e), e, e.__traceback__)
        status = 1
    finish(status)


def exit_status(code: object) -> int:
    """The status `sys.exit(code)` gives."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def finish(status: int) -> None:
    """Interpreter shutdown, minus freeing every object: that would copy the whole forked heap."""
    threading = sys.modules.get("threading")
    try:
        if threading is not None:
            threading._shutdown()  # joins non-daemon threads, as the interpreter does at exit
        atexit._run_exitfuncs()
    except BaseException:
        sys.excepthook(*sys.exc_info())
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = 120
    os._exit(status)


# -------------------------------------------------------------------------------------------------------
# Clean-up after an execution.


def remove_processes(uid: int) -> bool:
    """Kill every process of `uid` and reap them; True once this process has no children left."""
    for attempt in range(100):
        if not reap_children():
            return True
        as_user(uid, lambda: os.kill(-1, signal.SIGKILL))
        time.sleep(0.001 * attempt)
    return False


def reap_children() -> bool:
    """Reap the children that have exited; True while others remain."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def sizes_when_empty() -> dict[str, int] | None:
    """The size of each writable directory while empty, if each of them grows with every entry (tmpfs and
    mqueue count 20 bytes an entry): then one stat tells a directory is still empty. Else None, and every
    clean-up lists them all."""
    sizes = {}
    for directory in WRITABLE:
        empty = os.stat(directory).st_size
        probe = os.path.join(directory, "probe")
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        grown = os.stat(directory).st_size
        os.unlink(probe)
        if grown == empty or os.listdir(directory):
            return None
        sizes[directory] = empty
    return sizes


def only_main_left(empty_sizes: dict[str, int]) -> bool:
    """Remove the program's source, usually all there is (a command execution has none); True if that left
    the writable directories empty."""
    try:
        os.unlink(MAIN)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    for directory, size in empty_sizes.items():
        if os.stat(directory).st_size != size:
            return False
    return True


def remove_files(uid: int, empty_sizes: dict[str, int] | None) -> bool:
    """Empty the writable directories; True when nothing is left."""
    if empty_sizes and only_main_left(empty_sizes):
        return True
    stubborn = False
    for directory in WRITABLE:
        with os.scandir(directory) as entries:
            for entry in entries:
                # Plain files this process may unlink itself, as the owner of the sticky directories.
                if entry.is_dir(follow_symlinks=False):
                    stubborn = True
                    continue
                try:
                    os.unlink(entry.path)
                except OSError:
                    stubborn = True
    if stubborn:
        as_user(uid, remove_everything)
        return not leftover_paths()
    return True


def leftover_paths() -> list[str]:
    return [os.path.join(d, name) for d in WRITABLE for name in os.listdir(d)]


def remove_everything() -> None:
    """As the program's uid, which owns all of it (and may chmod what it made unreadable)."""
    for path in leftover_paths():
        remove_tree(path)


def remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        for name in os.listdir(path):
            remove_tree(os.path.join(path, name))
        os.rmdir(path)
    else:
        os.unlink(path)


def as_user(uid: int, action: Callable[[], object]) -> None:
    """Run `action` in a child that has dropped to `uid` (callers check the outcome themselves)."""
    pid = os.fork()
    if pid == 0:
        try:
            drop_to(uid)
            action()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


# -------------------------------------------------------------------------------------------------------
# Frames.


def send(fd: int, message: dict) -> None:
    data = json.dumps(message).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def receive(fd: int) -> dict | None:
    header = read_exactly(fd, 4)
    if header is None:
        return None
    body = read_exactly(fd, struct.unpack(">I", header)[0])
    return None if body is None else json.loads(body)


def read_exactly(fd: int, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


if __name__ == "__main__":
    main()
