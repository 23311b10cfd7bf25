"""The sandbox API, the same locally (SandboxPool) and through the service (SandboxClient): the public
methods build the HTTP API's request bodies, which each front end submits its own way."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from asyncrl.sandbox.config import SandboxLimits
from asyncrl.sandbox.errors import SandboxRequestError
from asyncrl.sandbox.protocol import ExecuteRequest, RunTestsRequest
from asyncrl.sandbox.result import CasesReport, IOCase, Result

LimitsArg = SandboxLimits | Mapping[str, int] | None
Body = TypeVar("Body", bound=BaseModel)


class SandboxAPI(abc.ABC):
    async def execute(
        self,
        code: str,
        stdin: str | None = None,
        files: Mapping[str, str] | None = None,
        timeout: float | None = None,
        limits: LimitsArg = None,
    ) -> Result:
        """Run Python `code` as /tmp/main.py, with `files` (relative path -> text) beside it."""
        fields = {"code": code, "stdin": stdin, "files": files or {}, "timeout": timeout}
        return await self.submit(_body(ExecuteRequest, fields, limits))

    async def run_command(
        self,
        command: list[str],
        stdin: str | None = None,
        files: Mapping[str, str] | None = None,
        timeout: float | None = None,
        limits: LimitsArg = None,
    ) -> Result:
        """Run an argv (e.g. ["python3", "-m", "unittest"]) in /tmp, over the supplied `files`."""
        fields = {"command": command, "stdin": stdin, "files": files or {}, "timeout": timeout}
        return await self.submit(_body(ExecuteRequest, fields, limits))

    async def run_tests(
        self,
        code: str,
        cases: Sequence[IOCase | Mapping[str, str]],
        timeout: float | None = None,
        limits: LimitsArg = None,
    ) -> CasesReport:
        """Run `code` once per case, the case's input on stdin, and judge its stdout. `timeout`: per case."""
        fields = {"code": code, "cases": list(cases), "timeout": timeout}
        return await self.submit_tests(_body(RunTestsRequest, fields, limits))

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the sandboxes or the connection."""

    @abc.abstractmethod
    async def submit(self, request: ExecuteRequest) -> Result:
        """One execution (`POST /v1/execute`)."""

    @abc.abstractmethod
    async def submit_tests(self, request: RunTestsRequest) -> CasesReport:
        """A solution against its cases (`POST /v1/run_tests`)."""


def _body(model: type[Body], fields: dict[str, Any], limits: LimitsArg) -> Body:
    if limits is not None:
        fields["limits"] = limits.model_dump() if isinstance(limits, SandboxLimits) else dict(limits)
    try:
        return model.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SandboxRequestError(f"{where}: {first['msg']}" if where else first["msg"]) from None
