"""The sandbox API of a running `asyncrl sandbox serve`: the same methods as SandboxPool, over HTTP.

A refusal for being busy (429) is retried with exponential backoff before SandboxBusyError is raised.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from asyncrl.network import secret
from asyncrl.sandbox.api import SandboxAPI
from asyncrl.sandbox.errors import (
    SandboxAuthError,
    SandboxBusyError,
    SandboxRequestError,
    SandboxServiceError,
)
from asyncrl.sandbox.protocol import TOKEN_ENV, ExecuteRequest, RunTestsRequest
from asyncrl.sandbox.result import CasesReport, Result

_ERRORS = {400: SandboxRequestError, 401: SandboxAuthError, 429: SandboxBusyError}


class SandboxClient(SandboxAPI):
    """`async with SandboxClient("http://host:8100") as sandbox: await sandbox.execute("print(1)")`."""

    def __init__(
        self, url: str, token: str | None = None, busy_retries: int = 8, backoff_s: float = 0.05
    ) -> None:
        self.url = url.rstrip("/")
        self.token = secret(token, TOKEN_ENV)
        self.busy_retries = busy_retries
        self.backoff_s = backoff_s
        self._http: httpx.AsyncClient | None = None

    async def submit(self, request: ExecuteRequest) -> Result:
        return Result.model_validate(await self._post("/v1/execute", request))

    async def submit_tests(self, request: RunTestsRequest) -> CasesReport:
        return CasesReport.model_validate(await self._post("/v1/run_tests", request))

    async def health(self) -> dict[str, Any]:
        try:
            response = await self._client().get("/health")
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        return _answer(response)

    async def _post(self, path: str, request: ExecuteRequest | RunTestsRequest) -> dict[str, Any]:
        body = request.model_dump(exclude_none=True)
        for attempt in range(self.busy_retries + 1):
            try:
                response = await self._client().post(path, json=body)
            except httpx.TransportError as e:
                raise self._unreachable(e) from None
            if response.status_code != 429 or attempt == self.busy_retries:
                break
            await asyncio.sleep(self.backoff_s * 2**attempt)
        return _answer(response)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            # No read timeout: the service bounds every execution by its own timeout.
            timeout = httpx.Timeout(10.0, read=None)
            self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)
        return self._http

    def _unreachable(self, error: httpx.TransportError) -> SandboxServiceError:
        return SandboxServiceError(
            f"cannot reach the sandbox service at {self.url} ({type(error).__name__}: {error}); "
            "is `asyncrl sandbox serve` running there?"
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> SandboxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200:
        return body
    message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    message = message or response.text[:500]
    raise _ERRORS.get(response.status_code, SandboxServiceError)(
        f"the sandbox service answered {response.status_code}: {message}"
    )
