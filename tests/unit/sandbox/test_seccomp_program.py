"""The seccomp filter assembles into valid classic BPF (its effect is tested on real sandboxes)."""

from __future__ import annotations

import struct

import pytest

from asyncrl.sandbox import SandboxUnavailableError
from asyncrl.sandbox.seccomp import filter_program


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_every_jump_lands_inside_the_program_and_it_ends_in_a_return(machine):
    program = filter_program(machine)
    instructions = list(struct.iter_unpack("=HBBI", program))
    for i, (code, jt, jf, _) in enumerate(instructions):
        if code & 0x07 == 0x05:  # BPF_JMP
            assert i + 1 + max(jt, jf) < len(instructions)
    assert instructions[-1][0] == 0x06  # BPF_RET


def test_an_unsupported_architecture_is_refused():
    with pytest.raises(SandboxUnavailableError, match="supports x86_64, aarch64"):
        filter_program("riscv64")
