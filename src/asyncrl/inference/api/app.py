"""The FastAPI app: the router, the error bodies (OpenAI-style, never a dead server), and the backend's
start and stop around the app's life."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from asyncrl.inference.api.access import Access, Guard
from asyncrl.inference.api.metrics import engine_registry
from asyncrl.inference.api.protocol import APIError
from asyncrl.inference.api.routes import router
from asyncrl.inference.api.served import Served
from asyncrl.inference.backend import EngineDeadError

log = logging.getLogger("asyncrl.inference")


def create_app(served: Served, access: Access) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await served.backend.start()
        yield
        await served.backend.stop()

    app = FastAPI(title="asyncrl inference", lifespan=lifespan)
    app.state.served = served
    app.state.access = access
    app.add_middleware(Guard, access=access)
    app.state.registry = engine_registry(served.backend)
    app.include_router(router)
    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(EngineDeadError, engine_dead)
    app.add_exception_handler(Exception, internal_error)
    return app


async def api_error(_: Request, e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
    first = e.errors()[0]
    if first["type"] == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        message = f"the request body is not valid JSON ({detail}); send a JSON object"
        return JSONResponse(APIError(400, message).body(), status_code=400)
    param = ".".join(str(p) for p in first["loc"] if p != "body") or None
    if first["type"] == "value_error":  # one of asyncrl's validators, whose message says it all
        message = first["msg"].removeprefix("Value error, ")
    elif param is None:  # the body as a whole: empty, or not an object
        message = "the request body must be a JSON object (Content-Type: application/json)"
    else:
        message = f"{param}: {first['msg']}"
    return JSONResponse(APIError(400, message, param).body(), status_code=400)


async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)


async def engine_dead(_: Request, e: EngineDeadError) -> JSONResponse:
    return JSONResponse(APIError(503, str(e)).body(), status_code=503)


async def internal_error(_: Request, e: Exception) -> JSONResponse:
    log.exception("unexpected error while serving a request")
    body = APIError(500, f"internal error: {type(e).__name__}: {e}", kind="internal_error").body()
    return JSONResponse(body, status_code=500)
