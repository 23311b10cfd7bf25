"""The sources of a fetch (origins and relays): which one to ask for the next shard, and the small
requests (which versions a source has, a version's manifest).

A source is scored by its measured rate divided by the transfers already running on it, so faster
sources get proportionally more shards; one never measured counts as fast as the best seen, so each is
tried, in the order given. A source that fails is rested for a while, longer after each failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from asyncrl.broadcast.errors import (
    ManifestError,
    SourceAuthError,
    SourcesUnreachableError,
    VersionNotFoundError,
)
from asyncrl.broadcast.manifest import Manifest

log = logging.getLogger("asyncrl.broadcast")
MIN_RATE_SAMPLE = 64 << 10
"""Transfers shorter than this are dominated by latency and say little about a source's rate."""
MAX_REST_S = 5.0
RETRY_S = 0.25


@dataclass
class Source:
    url: str
    order: int
    rate: float | None = None
    """Bytes per second of one transfer, a moving average (None: not measured yet)."""
    inflight: int = 0
    strikes: int = 0
    """Failures since the last success."""
    resting_until: float = 0.0


class SourcePool:
    """The sources of one fetch, behind one HTTP client (`async with`)."""

    def __init__(self, urls: list[str], token: str | None, timeout_s: float) -> None:
        if not urls:
            raise SourcesUnreachableError("no source given: pass the URL of one or more origins or relays")
        self.sources = [Source(url.rstrip("/"), i) for i, url in enumerate(dict.fromkeys(urls))]
        self.token, self.timeout_s = token, timeout_s
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> SourcePool:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()

    @property
    def urls(self) -> str:
        return ", ".join(s.url for s in self.sources)

    # -- choosing a source ------------------------------------------------------------------------------

    async def pick(self, avoid: set[str]) -> Source:
        """The best source not in `avoid` (any source when all are), waiting while they all rest."""
        candidates = [s for s in self.sources if s.url not in avoid] or self.sources
        while True:
            now = time.monotonic()
            ready = [s for s in candidates if s.resting_until <= now]
            if ready:
                best = max(ready, key=lambda s: (self._score(s), -s.order))
                best.inflight += 1
                return best
            await asyncio.sleep(min(s.resting_until for s in candidates) - now)

    def _score(self, source: Source) -> float:
        known = [s.rate for s in self.sources if s.rate]
        rate = source.rate or max(known, default=1.0)
        return rate / (source.inflight + 1)

    def succeeded(self, source: Source, received: int, seconds: float) -> None:
        source.inflight -= 1
        source.strikes = 0
        if received >= MIN_RATE_SAMPLE and seconds > 0:
            rate = received / seconds
            source.rate = rate if source.rate is None else 0.5 * source.rate + 0.5 * rate

    def failed(self, source: Source) -> None:
        source.inflight -= 1
        source.strikes += 1
        source.resting_until = time.monotonic() + min(MAX_REST_S, RETRY_S * 2 ** (source.strikes - 1))

    def busy(self, source: Source, retry_after_s: float) -> None:
        source.inflight -= 1
        source.resting_until = time.monotonic() + retry_after_s

    # -- requests ---------------------------------------------------------------------------------------

    async def get(self, source: Source, path: str, **kwargs: Any) -> httpx.Response:
        assert self._http is not None, "use `async with SourcePool(...)`"
        response = await self._http.get(source.url + path, **kwargs)
        check_auth(source, response)
        return response

    @asynccontextmanager
    async def stream(
        self, source: Source, path: str, headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        assert self._http is not None, "use `async with SourcePool(...)`"
        async with self._http.stream("GET", source.url + path, headers=headers) as response:
            check_auth(source, response)
            yield response

    async def versions(self, source: Source, after: int = -1, wait_s: float = 0.0) -> list[int] | None:
        """The versions `source` has (long-polling up to `wait_s` for one newer than `after`); None when it
        cannot be reached."""
        try:
            response = await self.get(
                source,
                "/versions",
                params={"after": after, "wait_s": wait_s},
                timeout=wait_s + self.timeout_s,
            )
            response.raise_for_status()
            return [int(v) for v in response.json()["versions"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            log.debug("%s: no version list (%s)", source.url, e)
            return None

    async def latest(self, wait_s: float) -> int:
        """The newest version any source has, waiting up to `wait_s` for one to appear."""
        deadline = time.monotonic() + wait_s
        while True:
            answers = await asyncio.gather(*(self.versions(s) for s in self.sources))
            newest = max((max(a) for a in answers if a), default=None)
            if newest is not None:
                return newest
            if time.monotonic() >= deadline:
                if all(a is None for a in answers):
                    raise SourcesUnreachableError(
                        f"no source answered ({self.urls}); check the URLs and that `asyncrl broadcast "
                        "serve` runs there"
                    )
                raise VersionNotFoundError(
                    f"no source has published a version yet ({self.urls}); is the origin's trainer running?"
                )
            await asyncio.sleep(RETRY_S)

    async def wait_for_newer(self, after: int, wait_s: float) -> int | None:
        """The newest version on the first source to have one newer than `after`; None if none does within
        `wait_s` (or none answers)."""
        polls = {asyncio.ensure_future(self.versions(s, after, wait_s)) for s in self.sources}
        try:
            while polls:
                done, polls = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
                newest = max((max(t.result()) for t in done if t.result()), default=-1)
                if newest > after:
                    return newest
            return None
        finally:
            for poll in polls:
                poll.cancel()

    async def manifest(self, version: int, wait_s: float) -> Manifest:
        """Version `version`'s manifest from the first source that has it, waiting up to `wait_s` for a
        source still mirroring it, unless every source already has newer versions only."""
        deadline = time.monotonic() + wait_s
        while True:
            problems: dict[str, str] = {}
            gone_for_good = True  # every source has moved past this version: waiting cannot help
            for source in self.sources:
                try:
                    response = await self.get(source, f"/v/{version}/manifest")
                except httpx.HTTPError as e:
                    problems[source.url] = f"unreachable ({type(e).__name__})"
                    gone_for_good = False
                    continue
                if response.status_code == 200:
                    try:
                        manifest = Manifest.parse(response.content, f"{source.url}'s manifest of v{version}")
                    except ManifestError as e:
                        problems[source.url] = str(e)
                        gone_for_good = False
                        continue
                    if manifest.version == version:
                        return manifest
                    problems[source.url] = f"answered with the manifest of version {manifest.version}"
                    continue
                has = _versions_in(response)
                if response.status_code == 404:
                    problems[source.url] = f"has {has or 'no version'}"
                else:
                    problems[source.url] = f"HTTP {response.status_code}"
                gone_for_good &= bool(has) and min(has) > version
            if gone_for_good or time.monotonic() >= deadline:
                raise _missing(version, problems)
            await asyncio.sleep(RETRY_S)


def check_auth(source: Source, response: httpx.Response) -> None:
    if response.status_code in (401, 403):
        raise SourceAuthError(
            f"{source.url} refused the bearer token (HTTP {response.status_code}); pass the node's token "
            "with --fetch.token or $ASYNCRL_BROADCAST_TOKEN"
        )


def _versions_in(response: httpx.Response) -> list[int]:
    """The versions a 404 answer says the node has."""
    try:
        return [int(v) for v in response.json()["error"]["versions"]]
    except (ValueError, KeyError, TypeError):
        return []


def _missing(version: int, problems: dict[str, str]) -> Exception:
    details = "; ".join(f"{url}: {problem}" for url, problem in problems.items())
    if all(p.startswith("unreachable") for p in problems.values()):
        return SourcesUnreachableError(f"no source answered for version {version} ({details})")
    if any("not a valid shardcast manifest" in p for p in problems.values()):
        return ManifestError(f"no source served a valid manifest of version {version} ({details})")
    return VersionNotFoundError(
        f"version {version} is on none of the sources ({details}); `--version latest` fetches the newest "
        "they have"
    )
