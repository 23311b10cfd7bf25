"""`asyncrl broadcast serve`: the HTTP API of an origin or a relay (both serve the same routes).

- `GET /health`: role, versions, pid (no token needed)
- `GET /versions?after=N&wait_s=S`: the versions here, `latest`; waits up to S seconds for one newer than N
- `GET /v/{N}/manifest`: the manifest (JSON)
- `GET /v/{N}/shards/{i}`, `GET /v/{N}/deltas/{i}`: bytes, with range requests; 503 past max_transfers
- `GET /stats`: egress (bytes sent, responses per shard)
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from asyncrl.broadcast.config import BroadcastServeConfig, token_or_env
from asyncrl.broadcast.errors import BroadcastError, VersionNotFoundError
from asyncrl.broadcast.files import Span, VersionFiles
from asyncrl.broadcast.origin import Origin
from asyncrl.broadcast.relay import Relay
from asyncrl.broadcast.store import VersionStore
from asyncrl.broadcast.transfer import ByteRangeResponse, Egress, RangeNotSatisfiable, RateLimit, parse_range
from asyncrl.network import bearer_matches, is_loopback

log = logging.getLogger("asyncrl.broadcast")
MAX_WAIT_S = 60.0


class Node(Protocol):
    role: str

    async def run(self) -> None: ...


class _Unauthorized(Exception):
    pass


def create_app(store: VersionStore, node: Node, config: BroadcastServeConfig) -> FastAPI:
    """The routes over `store`; `node` (origin or relay) keeps it filled while the app runs."""
    token = token_or_env(config.token)
    egress = Egress(config.max_transfers)
    rate = RateLimit(config.rate_limit_mb_s * 2**20)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(node.run())
        task.add_done_callback(lambda t: _report_crash(t, node.role))
        app.state.node_task = task
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app = FastAPI(title=f"asyncrl broadcast {node.role}", lifespan=lifespan)

    def authorize(authorization: str | None = Header(None)) -> None:
        if token is None:
            return
        if not bearer_matches(authorization, token):
            raise _Unauthorized()

    @app.exception_handler(_Unauthorized)
    async def unauthorized(_: Request, e: _Unauthorized) -> JSONResponse:
        message = "send this node's token as `Authorization: Bearer TOKEN` (--fetch.token)"
        return _error(401, message)

    @app.exception_handler(BroadcastError)
    async def broadcast_error(_: Request, e: BroadcastError) -> JSONResponse:
        if isinstance(e, VersionNotFoundError):
            return _error(404, str(e), versions=store.versions())
        return _error(e.http_status, str(e))

    @app.exception_handler(RangeNotSatisfiable)
    async def bad_range(_: Request, e: RangeNotSatisfiable) -> JSONResponse:
        return _error(416, str(e))

    @app.get("/health")
    async def health() -> JSONResponse:
        task: asyncio.Task = app.state.node_task
        # A node that stopped following its weights dir or upstreams must not look healthy.
        failed = task.done() and not task.cancelled() and task.exception() is not None
        body = {"status": "failed" if failed else "ok", "role": node.role, "versions": store.versions(),
                "pid": os.getpid()}  # fmt: skip
        return JSONResponse(body, status_code=503 if failed else 200)

    @app.get("/versions", dependencies=[Depends(authorize)])
    async def versions(after: int = -1, wait_s: float = Query(0.0, ge=0)) -> dict[str, Any]:
        await store.wait_newer(after, min(wait_s, MAX_WAIT_S))
        return {"versions": store.versions(), "latest": store.latest()}

    @app.get("/v/{version}/manifest", dependencies=[Depends(authorize)])
    async def manifest(version: int) -> Response:
        return Response(store.manifest(version).to_json(), media_type="application/json")

    @app.get("/v/{version}/shards/{index}", dependencies=[Depends(authorize)])
    async def shard(version: int, index: int, range: str | None = Header(None)) -> Response:
        manifest = store.manifest(version)
        if not 0 <= index < len(manifest.shards):
            return _error(404, f"version {version} has {len(manifest.shards)} shards, not {index + 1}")
        offset, size = manifest.shard_span(index)
        files = store.files(version)
        return send(lambda start, n, chunk: files.chunks(offset + start, n, chunk), size, range, version,
                    f"{version}/shards/{index}")  # fmt: skip

    @app.get("/v/{version}/deltas/{index}", dependencies=[Depends(authorize)])
    async def shard_delta(version: int, index: int, range: str | None = Header(None)) -> Response:
        manifest = store.manifest(version)
        if not 0 <= index < len(manifest.shards) or manifest.shards[index].delta_size is None:
            return _error(404, f"shard {index} of version {version} has no delta; fetch the shard whole")
        size = manifest.shards[index].delta_size
        path = store.delta_path(version, index)
        payload = VersionFiles(path.parent, [Span(path.name, size, 0)])
        return send(payload.chunks, size, range, version, f"{version}/deltas/{index}")

    def send(chunks: Any, size: int, range_header: str | None, version: int, key: str) -> Response:
        span = parse_range(range_header, size)
        if not egress.try_start():
            return _error(
                503, f"serving {egress.max_transfers} transfers already; retry", headers={"retry-after": "1"}
            )
        egress.count(version, key, store.versions())
        return ByteRangeResponse(chunks, size, span, egress, rate)

    @app.get("/stats", dependencies=[Depends(authorize)])
    async def stats() -> dict[str, Any]:
        return {"role": node.role, "versions": store.versions(), **egress.summary()}

    return app


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"message": message, **extra}}, status_code=status, headers=headers)


def _report_crash(task: asyncio.Task, role: str) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "the %s stopped publishing new versions; /health now fails", role, exc_info=task.exception()
        )


def build_node(config: BroadcastServeConfig, port: int) -> tuple[VersionStore, Node]:
    """The store and the origin or relay the config describes (`port`: the one bound, for default dirs)."""
    if config.weights_dir is not None:
        data_dir = config.data_dir or Path(config.weights_dir).resolve().parent / "broadcast"
        store = VersionStore(data_dir, config.keep)
        shard_size = max(4096, int(config.shard_mb * 2**20))
        return store, Origin(
            store, config.weights_dir, shard_size, config.delta, config.zstd_level, config.poll_s
        )
    cache = Path(os.environ.get("ASYNCRL_CACHE_DIR") or Path.home() / ".cache" / "asyncrl")
    store = VersionStore(config.data_dir or cache / f"broadcast-relay-{port}", config.keep)
    return store, Relay(store, config.upstream, config.fetch)


def serve(config: BroadcastServeConfig) -> None:
    """Run an origin or a relay until interrupted; the log says where it listens."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    port = sock.getsockname()[1]
    store, node = build_node(config, port)
    if token_or_env(config.token) is None and not is_loopback(config.host):
        log.warning("serving weights on %s with no token: anyone who reaches it can read them", config.host)
    app = create_app(store, node, config)
    log.info("%s serving on http://%s:%d (data in %s, versions %s)", node.role, config.host, port, store.root,
             store.versions())  # fmt: skip
    NodeServer(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5), store).run(
        sockets=[sock]
    )


class NodeServer(uvicorn.Server):
    """uvicorn, answering the long-polls (`/versions?wait_s=`) at once when shutting down instead of
    holding the shutdown for their whole wait."""

    def __init__(self, config: uvicorn.Config, store: VersionStore) -> None:
        super().__init__(config)
        self.store = store

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.store.close()
        await super().shutdown(sockets)
