"""What can go wrong in a broadcast, each an exception whose message says what to do next."""

from __future__ import annotations

from asyncrl.errors import UserError


class BroadcastError(UserError):
    """Base of the broadcast errors. `http_status` is what the inference server answers when a fetch for
    `/update_weights {"source": ...}` fails this way (a 4xx: the caller's sources, not the server, failed)."""

    http_status = 400


class VersionNotFoundError(BroadcastError):
    """No source has the version asked for (it was never published, or every source dropped it)."""

    http_status = 404


class SourcesUnreachableError(BroadcastError):
    """None of the sources answered."""


class SourceAuthError(BroadcastError):
    """A source refused the bearer token, or none was sent."""


class ManifestError(BroadcastError):
    """A manifest is malformed, or the files it describes do not match it."""


class DeltaError(BroadcastError):
    """A delta payload cannot be decoded (corrupt, or not a delta of this shard)."""


class ShardFetchError(BroadcastError):
    """A shard could not be fetched intact from any source within its attempts."""


class OutputExistsError(BroadcastError):
    """The output dir exists and holds something other than the version being fetched."""


class PublishError(BroadcastError):
    """The origin cannot publish a weights dir (unreadable, or a file vanished mid-publish)."""
