"""Who may use the server and what it may be told to load: bearer keys (one for generation, another for
the admin route that swaps the policy), a cap on request bodies, and the dirs and weight sources an
update may name. Checked before a route runs, so a refused request reads, loads and fetches nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asyncrl.errors import UserError
from asyncrl.inference.api.protocol import APIError
from asyncrl.inference.config import ADMIN_KEY_ENV, API_KEY_ENV, InferenceConfig
from asyncrl.network import bearer_matches, is_loopback, secret

OPEN_ROUTES = frozenset({"/health"})
"""Answered without a key: load balancers and supervisors probe it."""
ADMIN_ROUTES = frozenset({"/update_weights"})


class InsecureServerError(UserError):
    """The server would accept requests from other machines without keys."""


@dataclass(frozen=True)
class Access:
    api_key: str | None
    admin_key: str | None
    weights_root: Path | None
    sources: frozenset[str] | None
    """Weight sources an update may name; None: any."""
    loopback: bool
    max_request_bytes: int

    @classmethod
    def from_config(cls, config: InferenceConfig) -> Access:
        """The server's rules, keys taken from the environment when the config has none; refuses keys
        that would leave the server open to other machines."""
        api_key = secret(config.api_key, API_KEY_ENV)
        admin_key = secret(config.admin_key, ADMIN_KEY_ENV)
        loopback = is_loopback(config.host)
        if not loopback and (api_key is None or admin_key is None):
            keys = (("api-key", API_KEY_ENV, api_key), ("admin-key", ADMIN_KEY_ENV, admin_key))
            missing = " and ".join(f"--inference.{n} (or ${env})" for n, env, key in keys if key is None)
            raise InsecureServerError(
                f"listening on {config.host} lets other machines generate and swap the weights: set {missing}"
            )
        if api_key is not None and api_key == admin_key:
            raise InsecureServerError(
                "inference.admin_key must differ from api_key: whoever may generate could swap the weights"
            )
        listed = config.broadcast.sources
        return cls(
            api_key=api_key,
            admin_key=admin_key,
            weights_root=config.weights_root.resolve() if config.weights_root is not None else None,
            sources=frozenset(_url(u) for u in listed) if listed or not loopback else None,
            loopback=loopback,
            max_request_bytes=int(config.max_request_mb * 2**20),
        )

    def refusal(self, path: str, authorization: str | None) -> APIError | None:
        """Why a request to `path` with this Authorization header is refused; None when it may go on."""
        if path in OPEN_ROUTES:
            return None
        key = self.admin_key if path in ADMIN_ROUTES else self.api_key
        if key is None or bearer_matches(authorization, key):
            return None
        if path in ADMIN_ROUTES and self.api_key is not None and bearer_matches(authorization, self.api_key):
            return APIError(403, "this route needs the admin key, not the API key", kind="permission_error")
        which = "admin key (inference.admin_key)" if path in ADMIN_ROUTES else "API key (inference.api_key)"
        return APIError(401, f"send the server's {which} as `Authorization: Bearer KEY`", kind="auth_error")

    def weights_dir(self, path: str) -> str:
        """`path` if an update may load it: under weights_root, no `..`, no symlink leading out."""
        if ".." in Path(path).parts:
            raise APIError(400, f"weights path {path!r} contains `..`; give the dir itself", "path")
        if self.weights_root is None:
            if self.loopback:
                return path
            raise APIError(
                403,
                "this server loads no local dirs (it has no inference.weights_root): send `source` URLs",
                "path",
                kind="permission_error",
            )
        directory = Path(path).resolve()
        entries = [directory, *directory.iterdir()] if directory.is_dir() else [directory]
        outside = [e for e in entries if not e.resolve().is_relative_to(self.weights_root)]
        if outside:
            raise APIError(
                403,
                f"{outside[0]} lies outside this server's weights root {self.weights_root}",
                "path",
                kind="permission_error",
            )
        return path

    def check_sources(self, urls: list[str]) -> None:
        if self.sources is None:
            return
        unknown = [u for u in urls if _url(u) not in self.sources]
        if unknown:
            allowed = ", ".join(sorted(self.sources)) or "none: set inference.broadcast.sources"
            raise APIError(
                403,
                f"weight source {unknown[0]} is not one this server fetches from ({allowed})",
                "source",
                kind="permission_error",
            )


def _url(url: str) -> str:
    return url.rstrip("/")


class Guard:
    """ASGI middleware: refuses a request without the right key (401/403), or with a body over the cap
    (413), before the app reads it."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refused = self.access.refusal(scope["path"], headers.get("authorization"))
        if refused is not None:
            await _answer(refused, scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.access.max_request_bytes:
                await _answer(self._too_large(), scope, receive, send)
                return
            await self.app(scope, receive, send)  # the HTTP server holds the body to its stated length
            return
        body = await self._read_capped(receive)
        if body is None:
            await _answer(self._too_large(), scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_capped(self, receive: Receive) -> list[Message] | None:
        """A body sent without Content-Length (chunked), read up to the cap; None past it."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.access.max_request_bytes:
                return None
            if not message.get("more_body", False):
                return messages

    def _too_large(self) -> APIError:
        mb = self.access.max_request_bytes / 2**20
        message = f"the request body is over {mb:g} MiB (inference.max_request_mb)"
        return APIError(413, message, kind="too_large")


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _answer(error: APIError, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    await JSONResponse(error.body(), status_code=error.status, headers=headers)(scope, receive, send)
