"""Run untrusted code fast and safely: warm bubblewrap sandboxes, locally (SandboxPool) or through the
`asyncrl sandbox serve` HTTP service (SandboxClient), both with the same API."""

from asyncrl.sandbox.api import SandboxAPI
from asyncrl.sandbox.client import SandboxClient
from asyncrl.sandbox.errors import (
    SandboxAuthError,
    SandboxBusyError,
    SandboxCrashedError,
    SandboxRequestError,
    SandboxServiceError,
    SandboxUnavailableError,
    TokenRequiredError,
)
from asyncrl.sandbox.pool import SandboxPool
from asyncrl.sandbox.result import CasesReport, CaseVerdict, IOCase, Result

__all__ = [
    "CaseVerdict",
    "CasesReport",
    "IOCase",
    "Result",
    "SandboxAPI",
    "SandboxAuthError",
    "SandboxBusyError",
    "SandboxClient",
    "SandboxCrashedError",
    "SandboxPool",
    "SandboxRequestError",
    "SandboxServiceError",
    "SandboxUnavailableError",
    "TokenRequiredError",
]
