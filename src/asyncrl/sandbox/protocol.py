"""Request bodies of the sandbox HTTP API (the answers are `Result` and `CasesReport`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from asyncrl.sandbox.result import IOCase

TOKEN_ENV = "ASYNCRL_SANDBOX_TOKEN"
"""Where the service and its clients find the bearer token when none is passed."""


class ExecuteRequest(BaseModel):
    """`POST /v1/execute`: Python `code`, or a `command` argv, run over `files` in a fresh sandbox."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = None
    command: list[str] | None = None
    stdin: str | None = None
    files: dict[str, str] = {}
    timeout: float | None = None
    limits: dict[str, int] | None = None
    """Some SandboxLimits fields, to tighten the service's limits for this execution."""

    @model_validator(mode="after")
    def _one_program(self) -> ExecuteRequest:
        if (self.code is None) == (self.command is None):
            raise ValueError("give either code (Python source) or command (an argv list), not both")
        if self.command == []:
            raise ValueError("command is empty; give an argv list such as ['python3', '-m', 'unittest']")
        return self


class RunTestsRequest(BaseModel):
    """`POST /v1/run_tests`: `code` run once per case, the case's input on stdin."""

    model_config = ConfigDict(extra="forbid")

    code: str
    cases: list[IOCase] = Field(min_length=1)
    timeout: float | None = None
    """Per case."""
    limits: dict[str, int] | None = None


def error_body(message: str, kind: str) -> dict[str, dict[str, str]]:
    return {"error": {"message": message, "type": kind}}
