"""Errors of `asyncrl rl` that the CLI reports in a line or a log tail, without a traceback."""

from asyncrl.errors import UserError


class ChildFailedError(UserError):
    """One of the run's processes exited with an error, or the run dir cannot be used."""
