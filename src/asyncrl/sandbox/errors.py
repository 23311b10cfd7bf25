"""What can go wrong when running code in a sandbox, each with a message that says what to do."""

from __future__ import annotations

from asyncrl.errors import UserError


class SandboxUnavailableError(UserError):
    """No sandbox can be made on this machine (bubblewrap missing, no namespaces, not root, ...).
    Code is never run unsandboxed instead."""


class SandboxBusyError(UserError):
    """Every sandbox is busy and the queue is full; retry later (HTTP 429)."""


class SandboxRequestError(UserError, ValueError):
    """An execution request is malformed or asks for more than the service allows (HTTP 400)."""


class SandboxCrashedError(UserError):
    """A sandbox died or stopped answering during an execution; it has been replaced."""


class SandboxServiceError(UserError):
    """The sandbox service could not be reached or failed to answer."""


class SandboxAuthError(UserError):
    """The sandbox service refused the bearer token, or none was given."""


class TokenRequiredError(UserError):
    """The service would listen on a non-loopback address without a bearer token."""
