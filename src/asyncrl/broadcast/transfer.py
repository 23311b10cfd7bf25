"""Sending shard bytes: HTTP range requests, a bound on concurrent transfers (the node's fan-out), an
optional egress rate cap, and the count of bytes sent (a node's egress, which the benchmark reports)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger("asyncrl.broadcast")
CHUNK = 1 << 20


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes outside the body (HTTP 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single `bytes=` range; None for the whole body (no header, or one this
    server does not read, which RFC 9110 lets it ignore)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if not first:
            start, end = max(0, size - int(last)), size
        else:
            start = int(first)
            end = min(size, int(last) + 1) if last else size
    except ValueError:
        return None
    if start < 0 or start >= end:
        raise RangeNotSatisfiable(f"range {header!r} is outside the {size} bytes of this body")
    return start, end


class RateLimit:
    """A token bucket shared by all transfers of a node: at most `bytes_per_s` on average (0: no cap)."""

    def __init__(self, bytes_per_s: float) -> None:
        self.bytes_per_s = bytes_per_s
        self._next_free = 0.0

    @property
    def chunk(self) -> int:
        """Chunk size: small enough under a cap that the rate is smooth (~20 sends a second)."""
        return CHUNK if not self.bytes_per_s else int(min(CHUNK, max(4096, self.bytes_per_s / 20)))

    async def take(self, size: int) -> None:
        if not self.bytes_per_s:
            return
        now = time.monotonic()
        start = max(now, self._next_free)
        self._next_free = start + size / self.bytes_per_s
        if start > now:
            await asyncio.sleep(start - now)


class Egress:
    """What a node has sent: bytes, and responses per (version, kind, index)."""

    def __init__(self, max_transfers: int) -> None:
        self.max_transfers = max_transfers
        self.active = 0
        self.bytes_sent = 0
        self.refused_busy = 0
        self._responses: dict[int, Counter[str]] = {}

    def try_start(self) -> bool:
        """Reserve a transfer slot; False when the node already serves max_transfers."""
        if self.active >= self.max_transfers:
            self.refused_busy += 1
            return False
        self.active += 1
        return True

    def finish(self) -> None:
        self.active -= 1

    def count(self, version: int, key: str, kept: list[int]) -> None:
        """Count a response to `key` ("N/shards/i"). Counts of versions no longer `kept` are dropped, so a
        node that runs for thousands of versions holds only a few versions' counts."""
        if version not in self._responses:
            for old in [v for v in self._responses if v not in kept]:
                del self._responses[old]
            self._responses[version] = Counter()
        self._responses[version][key] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "bytes_sent": self.bytes_sent,
            "active_transfers": self.active,
            "refused_busy": self.refused_busy,
            "responses": {key: n for counts in self._responses.values() for key, n in counts.items()},
        }


class ByteRangeResponse(Response):
    """Streams [start, end) of a body produced by `chunks(offset, size, chunk_size)`; holds one of the
    node's transfer slots until the last byte is sent or the client goes away."""

    def __init__(
        self,
        chunks: Callable[[int, int, int], Iterator[bytes]],
        size: int,
        span: tuple[int, int] | None,
        egress: Egress,
        rate: RateLimit,
    ) -> None:
        self._chunks, self._egress, self._rate = chunks, egress, rate
        self._start, self._end = span or (0, size)
        headers = {"accept-ranges": "bytes", "content-length": str(self._end - self._start)}
        if span is not None:
            headers["content-range"] = f"bytes {self._start}-{self._end - 1}/{size}"
        super().__init__(
            status_code=206 if span else 200, headers=headers, media_type="application/octet-stream"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # uvicorn drops writes to a closed connection silently; watching for the disconnect is how a
        # transfer to a client that went away stops (and frees its slot) instead of reading on.
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            for data in self._chunks(self._start, self._end - self._start, self._rate.chunk):
                await self._rate.take(len(data))
                if gone.done():
                    return
                await send({"type": "http.response.body", "body": data, "more_body": True})
                self._egress.bytes_sent += len(data)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError as e:
            # Ending without the last body message makes the server cut the connection: the client sees a
            # short body and takes these bytes from another source.
            log.warning("stopped a transfer: %s", e)
        finally:
            gone.cancel()
            self._egress.finish()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
