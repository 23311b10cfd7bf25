"""`asyncrl sandbox serve`: the sandbox API over HTTP, in front of one warm pool."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from asyncrl.network import bearer_matches, is_loopback, secret
from asyncrl.sandbox.config import SandboxServeConfig
from asyncrl.sandbox.errors import (
    SandboxAuthError,
    SandboxBusyError,
    SandboxCrashedError,
    SandboxRequestError,
    SandboxUnavailableError,
    TokenRequiredError,
)
from asyncrl.sandbox.isolation import check_available
from asyncrl.sandbox.pool import SandboxPool
from asyncrl.sandbox.protocol import TOKEN_ENV, ExecuteRequest, RunTestsRequest, error_body
from asyncrl.sandbox.result import CasesReport, Result

log = logging.getLogger("asyncrl.sandbox")


def create_app(pool: SandboxPool, token: str | None) -> FastAPI:
    """The routes over `pool`, which the app starts and closes with itself."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.start()
        yield
        await pool.close()

    app = FastAPI(title="asyncrl sandbox", lifespan=lifespan)
    # A request must fit in a sandbox's scratch space (JSON escapes may double it); refused before it is read.
    max_body = (2 * pool.config.scratch_mb + 1) << 20

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_body:
            message = (
                f"the request body is over {max_body} bytes; a program and its files must fit in scratch_mb"
            )
            return JSONResponse(error_body(message, "too_large"), status_code=413)
        return await call_next(request)

    def authorize(authorization: str | None = Header(None)) -> None:
        if token is None:
            return
        if not bearer_matches(authorization, token):
            raise SandboxAuthError("missing or wrong bearer token: send Authorization: Bearer TOKEN")

    for error, status, kind in (
        (SandboxBusyError, 429, "busy"),
        (SandboxRequestError, 400, "invalid_request"),
        (SandboxAuthError, 401, "unauthorized"),
        (SandboxCrashedError, 503, "sandbox_crashed"),
        (SandboxUnavailableError, 503, "unavailable"),
    ):
        app.add_exception_handler(error, _handler(status, kind))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        message = f"{where}: {first['msg']}" if where else first["msg"]
        return JSONResponse(error_body(message, "invalid_request"), status_code=400)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "pid": os.getpid(), **pool.stats()}

    @app.post("/v1/execute", dependencies=[Depends(authorize)])
    async def execute(request: ExecuteRequest) -> Result:
        return await pool.submit(request)

    @app.post("/v1/run_tests", dependencies=[Depends(authorize)])
    async def run_tests(request: RunTestsRequest) -> CasesReport:
        return await pool.submit_tests(request)

    return app


def _handler(status: int, kind: str) -> Any:
    async def handle(_: Request, e: Exception) -> JSONResponse:
        headers = {429: {"Retry-After": "1"}, 401: {"WWW-Authenticate": "Bearer"}}.get(status)
        return JSONResponse(error_body(str(e), kind), status_code=status, headers=headers)

    return handle


def serve(config: SandboxServeConfig) -> None:
    """Run the service until interrupted; problems with the token or the sandbox surface before binding."""
    token = secret(config.token, TOKEN_ENV)
    if token is None and not is_loopback(config.host):
        raise TokenRequiredError(
            f"listening on {config.host} lets other machines run code here: set a bearer token with "
            f"--token or ${TOKEN_ENV} (clients send it as Authorization: Bearer TOKEN)"
        )
    check_available(config.sandbox)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(SandboxPool(config.sandbox), token)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
