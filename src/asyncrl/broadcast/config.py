"""Configs of shardcast: the `asyncrl broadcast serve|fetch` commands, and the sections other processes
use to reach it (`[inference.broadcast]` of an inference server, `[orchestrator.weights]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from asyncrl.config_loader import BaseConfig
from asyncrl.network import secret

TOKEN_ENV = "ASYNCRL_BROADCAST_TOKEN"


def token_or_env(token: str | None) -> str | None:
    """The configured bearer token, else $ASYNCRL_BROADCAST_TOKEN, else none."""
    return secret(token, TOKEN_ENV)


class FetchConfig(BaseConfig):
    token: str | None = None
    """Bearer token sent to every source (default: $ASYNCRL_BROADCAST_TOKEN)."""

    connections: int = Field(8, ge=1)
    """Shards downloaded at once, spread over the sources; faster sources get more of them."""

    attempts: int = Field(5, ge=1)
    """Tries of one shard, each preferring a source that has not failed it, before the fetch fails."""

    timeout_s: float = Field(30.0, gt=0)
    """A source that sends nothing for this long fails that shard, which is retried elsewhere."""

    wait_s: float = Field(30.0, ge=0)
    """How long to wait for a version no source has yet (a relay still mirroring it) before reporting
    it missing."""

    delta: bool = True
    """Fetch shards as deltas against the previous version when the manifest offers them and that
    version is here; every rebuilt shard is checked against the full shard's checksum."""


class BroadcastServeConfig(BaseConfig):
    """`asyncrl broadcast serve`: an origin (--weights-dir RUN/weights) or a relay (--upstream URL ...)."""

    weights_dir: Path | None = None
    """Origin: a run's weights/ dir; each step_N/ with its STABLE marker is published as version N."""

    upstream: list[str] = []
    """Relay: origins or relays to mirror; each new version is fetched, verified, then served."""

    host: str = "127.0.0.1"
    """Address to listen on."""

    port: int = Field(8200, ge=0, le=65535)
    """TCP port (0 picks a free one; the log says which)."""

    data_dir: Path | None = None
    """Where this node keeps its versions (default: weights_dir/../broadcast for an origin,
    $ASYNCRL_CACHE_DIR/broadcast-relay-PORT for a relay). A restarted node serves what it kept."""

    keep: int = Field(3, ge=1)
    """Versions kept; older ones are deleted."""

    shard_mb: float = Field(8.0, gt=0)
    """Origin: size of one shard, MiB (the last one of a version is shorter)."""

    delta: bool = True
    """Origin: also publish each version as deltas against the previous one (on the weights' bit patterns,
    byte planes, zstd), which clients holding the previous version fetch instead of the full shards."""

    zstd_level: int = Field(1, ge=1, le=22)
    """Origin: zstd level of the deltas (higher: smaller and slower to publish)."""

    token: str | None = None
    """Bearer token clients must send (default: $ASYNCRL_BROADCAST_TOKEN; none: open, fine on loopback)."""

    max_transfers: int = Field(16, ge=1)
    """Shard downloads this node serves at once (its fan-out); more are answered 503 and the client
    takes them from another source or waits."""

    rate_limit_mb_s: float = Field(0.0, ge=0)
    """Cap on this node's egress, MiB/s (0: none), leaving bandwidth to the node's other work."""

    poll_s: float = Field(0.2, gt=0)
    """Origin: how often weights_dir is checked for a new step."""

    fetch: FetchConfig = FetchConfig()
    """Relay: how versions are fetched from the upstreams."""

    def role_problem(self) -> str | None:
        """Why this config names neither an origin nor a relay (or both); None when it names one."""
        if (self.weights_dir is None) == (not self.upstream):
            return "give one of --weights-dir RUN/weights (an origin) and --upstream URL [URL ...] (a relay)"
        return None


class BroadcastFetchConfig(BaseConfig):
    """`asyncrl broadcast fetch URL [URL ...] --version N|latest --out DIR`: one version as an HF dir."""

    sources: list[str] = []
    """Origins or relays to fetch from (also the positional arguments)."""

    version: str = "latest"
    """A version number, or `latest` (the newest any source has)."""

    out: Path | None = None
    """The HF dir to write (atomically: it appears complete or not at all)."""

    base: Path | None = None
    """A dir this command fetched before (the previous version): shards come as deltas against it."""

    progress: bool = True
    """Show a progress bar (bytes and rate) on stderr."""

    output: Literal["text", "json"] = "text"
    """`text`: one summary line; `json`: the fetch report (`--json` is short for this)."""

    fetch: FetchConfig = FetchConfig()
    """Connections, retries, token."""

    @field_validator("version")
    @classmethod
    def _number_or_latest(cls, value: str) -> str:
        if value != "latest" and not value.isdigit():
            raise ValueError("a version number (0, 1, ...) or `latest`")
        return value


class InferenceBroadcastConfig(FetchConfig):
    """How an inference server fetches weights for `/update_weights {"source": [URLs], "version": N}`."""

    sources: list[str] = []
    """The origins and relays `/update_weights` may name as `source`; any other URL is refused before
    anything is fetched. Empty: any URL on a loopback server, none on any other address."""

    dir: Path | None = None
    """Where fetched weights are written, one step_N/ each (default: a new temporary dir)."""

    keep: int = Field(2, ge=1)
    """Fetched versions kept in dir; the newest is the base the next version's deltas apply to."""


class WeightSourcesConfig(BaseConfig):
    sources: list[str] = []
    """Broadcast origin or relays the inference servers fetch new weights from, when they share no disk
    with the trainer (empty: the servers load weights/step_N/ from the run dir)."""

    token: str | None = None
    """Bearer token for asking the sources which versions they have (default: $ASYNCRL_BROADCAST_TOKEN);
    the servers send their own inference.broadcast.token."""
