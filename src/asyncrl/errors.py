"""The one base of every error whose message tells the user what to do.

The CLI prints such an error as one line, with no traceback. Keeping the base here, away from the modules
that raise it, lets the CLI catch them all without importing torch or any process's code first.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix from its message alone (a bad path, a peer that is down, ...)."""

    exit_code = 1
    """What the CLI exits with on it: a supervising launcher tells some errors apart by it."""
