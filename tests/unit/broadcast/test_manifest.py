"""A manifest describes every byte of a version exactly once, inside the version's dir."""

from __future__ import annotations

import json

import pytest

from asyncrl.broadcast.errors import ManifestError
from asyncrl.broadcast.manifest import FileEntry, Manifest, ShardEntry, is_safe_path

SHA = "0" * 64


def _manifest(**changes) -> dict:
    body = {
        "version": 3,
        "shard_size": 10,
        "total_size": 25,
        "files": [
            {"path": "config.json", "size": 5, "offset": 0, "sha256": SHA},
            {"path": "empty.txt", "size": 0, "offset": 5, "sha256": SHA},
            {"path": "sub/model.safetensors", "size": 20, "offset": 5, "sha256": SHA},
        ],
        "shards": [{"size": 10, "sha256": SHA}, {"size": 10, "sha256": SHA}, {"size": 5, "sha256": SHA}],
    }
    body.update(changes)
    return body


def test_a_consistent_manifest_round_trips_through_its_canonical_json():
    manifest = Manifest.model_validate(_manifest())
    again = Manifest.parse(manifest.to_json())
    assert again == manifest and again.digest == manifest.digest
    assert manifest.shard_span(2) == (20, 5)
    assert manifest.delta_bytes == 25


@pytest.mark.parametrize(
    "changes",
    [
        {"total_size": 26},  # files do not add up
        {"shards": [{"size": 10, "sha256": SHA}, {"size": 10, "sha256": SHA}]},  # a shard missing
        {"shards": [{"size": 10, "sha256": SHA}, {"size": 10, "sha256": SHA}, {"size": 6, "sha256": SHA}]},
        {
            "files": [
                {"path": "a", "size": 5, "offset": 0, "sha256": SHA},
                {"path": "b", "size": 20, "offset": 4, "sha256": SHA},
            ]
        },  # fmt: skip
        {"files": [{"path": "../escape", "size": 25, "offset": 0, "sha256": SHA}]},
        {"files": [{"path": "/etc/passwd", "size": 25, "offset": 0, "sha256": SHA}]},
        {
            "files": [
                {"path": "a", "size": 5, "offset": 0, "sha256": SHA},
                {"path": "a", "size": 20, "offset": 5, "sha256": SHA},
            ]
        },  # fmt: skip
        {
            "shards": [
                {"size": 10, "sha256": SHA, "delta_size": 3, "delta_sha256": SHA},
                {"size": 10, "sha256": SHA},
                {"size": 5, "sha256": SHA},
            ]
        },  # fmt: skip  # delta, no base
        {"delta_base": 3},  # a base that is not older
        {"shards": [{"size": 10, "sha256": "xyz"}, {"size": 10, "sha256": SHA}, {"size": 5, "sha256": SHA}]},
    ],
)
def test_inconsistent_or_unsafe_manifests_are_refused(changes):
    with pytest.raises(ManifestError, match="not a valid shardcast manifest"):
        Manifest.parse(json.dumps(_manifest(**changes)))


def test_garbage_is_a_manifest_error_naming_its_source():
    with pytest.raises(ManifestError, match="relay-x"):
        Manifest.parse(b"<html>not json</html>", "relay-x")


@pytest.mark.parametrize("path", ["a/b.bin", "model.safetensors", "x..y"])
def test_plain_relative_paths_are_safe(path):
    assert is_safe_path(path)


@pytest.mark.parametrize("path", ["", ".", "..", "a/../b", "/abs", "a//b", "./a", "a\\b", "a/"])
def test_paths_leaving_the_dir_or_not_normalised_are_unsafe(path):
    assert not is_safe_path(path)


def test_a_shard_without_a_delta_is_fetched_whole():
    shard = ShardEntry(size=1, sha256=SHA)
    assert shard.delta_size is None and FileEntry(path="a", size=1, offset=0, sha256=SHA).size == 1
