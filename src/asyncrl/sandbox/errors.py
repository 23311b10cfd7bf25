"""What can go wrong when running code in a sandbox, each with a message that says what to do."""

from __future__ import annotations


class SandboxUnavailableError(Exception):
    """No sandbox can be made on this machine (bubblewrap missing, no namespaces, not root, ...).
    Code is never run unsandboxed instead."""


class SandboxBusyError(Exception):
    """Every sandbox is busy and the queue is full; retry later (HTTP 429)."""


class SandboxRequestError(ValueError):
    """An execution request is malformed or asks for more than the service allows (HTTP 400)."""


class SandboxCrashedError(Exception):
    """A sandbox died or stopped answering during an execution; it has been replaced."""


class SandboxServiceError(Exception):
    """The sandbox service could not be reached or failed to answer."""


class SandboxAuthError(Exception):
    """The sandbox service refused the bearer token, or none was given."""


class TokenRequiredError(Exception):
    """The service would listen on a non-loopback address without a bearer token."""


USER_ERRORS = (
    SandboxUnavailableError,
    SandboxBusyError,
    SandboxRequestError,
    SandboxCrashedError,
    SandboxServiceError,
    SandboxAuthError,
    TokenRequiredError,
)
"""The errors whose message tells the user what to do."""
