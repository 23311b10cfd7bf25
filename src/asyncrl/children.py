"""Child processes that do not outlive the process that started them.

A process killed outright (SIGKILL, the OOM killer, a test's timeout) cannot stop its children; left
running, they hold the CPU, ports and GPU memory. On Linux the kernel can signal a child when its parent
dies: `die_with_parent` asks for that, as the `preexec_fn` of a Popen.
"""

from __future__ import annotations

import ctypes
import signal
import sys

# Loaded here, not in the forked child: a dlopen between fork and exec can deadlock on a lock another
# thread of this process held at the fork.
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the thread that started it exits, even by SIGKILL (so
    start children from a thread that lives as long as they should)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
