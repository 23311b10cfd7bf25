"""The origin's side: a weights dir becomes a checked, sharded version; the store keeps the last K."""

from __future__ import annotations

import hashlib

import pytest

from asyncrl.broadcast import delta
from asyncrl.broadcast.errors import PublishError, VersionNotFoundError
from asyncrl.broadcast.publish import publish_version
from asyncrl.broadcast.store import VersionStore
from asyncrl.transport.layout import latest_stable
from tests.integration.broadcast.nodes import nudged, random_tensors, write_step

SHARD = 64 << 10


def _publish(store: VersionStore, source, version: int, with_delta: bool = True):
    staging, manifest = publish_version(source, version, store, SHARD, with_delta)
    store.commit(version, staging, manifest)
    return manifest


def test_a_published_version_has_a_checksum_for_every_shard_and_file(tmp_path):
    step = write_step(tmp_path / "weights", 1, random_tensors(0))
    store = VersionStore(tmp_path / "data", keep=3)
    manifest = _publish(store, step, 1)

    assert [f.path for f in manifest.files] == ["config.json", "model.safetensors"]  # not STABLE
    for entry in manifest.files:
        assert entry.sha256 == hashlib.sha256((step / entry.path).read_bytes()).hexdigest()
    files = store.files(1)
    for index, shard in enumerate(manifest.shards):
        offset, size = manifest.shard_span(index)
        assert hashlib.sha256(files.read(offset, size)).hexdigest() == shard.sha256
    assert manifest.delta_base is None and all(s.delta_size is None for s in manifest.shards)
    # A reloaded store (a restarted origin) serves what it kept.
    assert VersionStore(tmp_path / "data", keep=3).manifest(1) == manifest


def test_the_next_version_carries_deltas_that_rebuild_it(tmp_path):
    tensors = random_tensors(0)
    store = VersionStore(tmp_path / "data", keep=3)
    _publish(store, write_step(tmp_path / "weights", 1, tensors), 1)
    manifest = _publish(store, write_step(tmp_path / "weights", 2, nudged(tensors)), 2)

    assert manifest.delta_base == 1 and manifest.delta_stride == 4
    assert manifest.delta_bytes < 0.7 * manifest.total_size
    old, new = store.files(1), store.files(2)
    for index, shard in enumerate(manifest.shards):
        offset, size = manifest.shard_span(index)
        payload = store.delta_path(2, index).read_bytes()
        phase = manifest.delta_phase_of(index)
        rebuilt = delta.decode(payload, old.read(offset, size), 4, phase, manifest.delta_codec)
        assert rebuilt == new.read(offset, size)
        assert shard.delta_sha256 == hashlib.sha256(store.delta_path(2, index).read_bytes()).hexdigest()


def test_a_version_of_another_layout_gets_no_deltas(tmp_path):
    store = VersionStore(tmp_path / "data", keep=3)
    _publish(store, write_step(tmp_path / "weights", 1, random_tensors(0)), 1)
    manifest = _publish(store, write_step(tmp_path / "weights", 2, random_tensors(1, size=1000)), 2)
    assert manifest.delta_base is None


def test_the_store_keeps_the_last_k_versions(tmp_path):
    store = VersionStore(tmp_path / "data", keep=2)
    for step in (1, 2, 3):
        _publish(store, write_step(tmp_path / "weights", step, random_tensors(step)), step)
    assert store.versions() == [2, 3]
    assert not store.version_dir(1).exists()
    with pytest.raises(VersionNotFoundError, match=r"has \[2, 3\]"):
        store.manifest(1)


def test_only_stable_steps_are_published_and_the_newest_first(tmp_path):
    weights = tmp_path / "weights"
    assert latest_stable(weights) is None
    write_step(weights, 1, random_tensors(0))
    write_step(weights, 2, random_tensors(1))
    write_step(weights, 3, random_tensors(2), stable=False)  # the trainer is still writing it
    assert latest_stable(weights) == (2, weights / "step_2")
    with pytest.raises(PublishError, match="does not exist"):
        publish_version(weights / "step_9", 9, VersionStore(tmp_path / "data", 2), SHARD, True)
