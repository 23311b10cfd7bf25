"""The viewer's HTTP app: the page (static files) and the JSON it polls, on one run dir, read-only."""

from __future__ import annotations

import hmac
import os
import socket
from importlib import resources
from pathlib import Path

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from asyncrl.network import bearer_matches
from asyncrl.viewer.config import TOKEN_ENV, ViewConfig
from asyncrl.viewer.run_data import RunData, StepGone, check_run_dir

STATIC = Path(str(resources.files("asyncrl.viewer") / "static"))
PAGES = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
COOKIE = "asyncrl_view_token"


def create_app(run_dir: Path, token: str | None = None) -> FastAPI:
    """The viewer of `run_dir`; with `token`, every route needs it (`?token=`, a cookie the page then
    holds, or `Authorization: Bearer`)."""
    data = RunData(run_dir)
    app = FastAPI(title="asyncrl view", docs_url=None, redoc_url=None, openapi_url=None)

    async def authorize(request: Request, call_next):  # noqa: ANN001, ANN202 - Starlette's signature
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(given.encode(), token.encode()) and not bearer_matches(
            request.headers.get("authorization"), token
        ):
            return JSONResponse({"error": "open the page with ?token=TOKEN (asyncrl view --token)"}, 401)
        response = await call_next(request)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")  # the page's own requests
        return response

    if token is not None:
        app.middleware("http")(authorize)

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in PAGES:
            raise HTTPException(404, f"no file {name}")
        return FileResponse(STATIC / name, media_type=PAGES[name])

    @app.get("/api/run")
    def run() -> dict:
        return {**data.summary(), "sample_steps": data.sample_steps()}

    @app.get("/api/metrics")
    def metrics(request: Request) -> Response:
        tag = f'"{data.metrics_tag()}"'
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers={"ETag": tag})
        return JSONResponse({"rows": data.metrics()}, headers={"ETag": tag})

    @app.get("/api/samples/{step}")
    def samples(step: int) -> dict:
        try:
            return data.samples(step)
        except StepGone as e:
            raise HTTPException(404, str(e)) from None

    @app.get("/api/search")
    def search(q: str = "", min_reward: float | None = None, max_reward: float | None = None) -> dict:
        return data.search(q, min_reward, max_reward)

    return app


def serve_viewer(config: ViewConfig) -> None:
    run_dir = check_run_dir(config.run_dir)
    token = config.token or os.environ.get(TOKEN_ENV)
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))  # bound here, so the printed URL has the port port 0 picked
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    url = f"http://{shown}:{sock.getsockname()[1]}/" + (f"?token={token}" if token else "")
    print(f"asyncrl view: {run_dir} at {url}", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(run_dir, token), log_level="warning"))
    server.run(sockets=[sock])
