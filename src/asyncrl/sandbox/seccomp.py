"""A seccomp filter for everything inside a sandbox: no new namespaces, kernel keyrings or SysV IPC.

With all capabilities dropped a program can still create a user namespace, where it holds every
capability again (a large kernel attack surface); and it can park data where its process dies but the
data does not, for the next execution under the same uid to find: its uid's keyring, SysV shared memory,
semaphores and message queues. bwrap loads this classic-BPF program with `--seccomp FD`.
"""

from __future__ import annotations

import errno
import platform
import struct

from asyncrl.sandbox.errors import SandboxUnavailableError

_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian: arg 0's low half at 16)
_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_X32_BIT = 0x40000000

# audit arch; syscall numbers of clone, clone3 and unshare; then those refused outright: setns, add_key,
# request_key, keyctl, shmget, semget, msgget
_ARCHES = {
    "x86_64": (0xC000003E, 56, 435, 272, (308, 248, 249, 250, 29, 64, 68)),
    "aarch64": (0xC00000B7, 220, 435, 97, (268, 217, 218, 219, 194, 190, 186)),
}


def filter_program(machine: str | None = None) -> bytes:
    """The filter for this machine's architecture, as the bytes bwrap reads."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise SandboxUnavailableError(
            f"the sandbox's seccomp filter supports {', '.join(_ARCHES)}, not {machine}; "
            "run the sandbox service on one of those"
        )
    arch, clone, clone3, unshare, refused = _ARCHES[machine]
    program: list[str | tuple[int, int | str, int | str, int]] = [
        (_LD_ABS, 0, 0, _ARCH),
        # Syscalls of another ABI (i386 via int 0x80) have other numbers: refuse them all.
        (_JEQ, 0, "deny", arch),
        (_LD_ABS, 0, 0, _NR),
    ]
    if machine == "x86_64":
        program.append((_JGE, "deny", 0, _X32_BIT))
    program += [
        # glibc falls back to clone when clone3 is missing; clone3's flags sit in memory BPF cannot read.
        (_JEQ, "nosys", 0, clone3),
        (_JEQ, "flags", 0, clone),
        (_JEQ, "flags", 0, unshare),
        *((_JEQ, "deny", 0, nr) for nr in refused),
        (_RET, 0, 0, _ALLOW),
        "flags",
        (_LD_ABS, 0, 0, _ARG0),
        (_JSET, "deny", 0, _NAMESPACE_FLAGS),
        (_RET, 0, 0, _ALLOW),
        "deny",
        (_RET, 0, 0, _ERRNO | errno.EPERM),
        "nosys",
        (_RET, 0, 0, _ERRNO | errno.ENOSYS),
    ]
    return _assemble(program)


def _assemble(program: list[str | tuple[int, int | str, int | str, int]]) -> bytes:
    """sock_filter structs; string items are labels, and jumps to a label become relative offsets."""
    labels: dict[str, int] = {}
    instructions: list[tuple[int, int | str, int | str, int]] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(instructions)
        else:
            instructions.append(item)

    def offset(target: int | str, at: int) -> int:
        return labels[target] - at - 1 if isinstance(target, str) else target

    return b"".join(
        struct.pack("=HBBI", code, offset(jt, i), offset(jf, i), k)
        for i, (code, jt, jf, k) in enumerate(instructions)
    )
