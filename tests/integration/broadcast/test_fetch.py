"""Origin, relay and client over real HTTP on 127.0.0.1 (nodes in threads of the test process)."""

from __future__ import annotations

import threading

import httpx
import pytest

from asyncrl.broadcast.client import fetch_version
from asyncrl.broadcast.config import FetchConfig
from asyncrl.broadcast.errors import (
    OutputExistsError,
    ShardFetchError,
    SourceAuthError,
    SourcesUnreachableError,
    VersionNotFoundError,
)
from tests.integration.broadcast.nodes import (
    NodeThread,
    nudged,
    random_tensors,
    same_files,
    stored_files,
    write_step,
)

SHARD_MB = 0.125  # ~0.8 MB versions in 7 shards
FAST = FetchConfig(wait_s=5, timeout_s=10)


@pytest.fixture()
def weights(tmp_path):
    write_step(tmp_path / "weights", 1, random_tensors(0))
    return tmp_path / "weights"


def _origin(weights, **settings) -> NodeThread:
    return NodeThread(weights_dir=weights, data_dir=weights.parent / "origin", shard_mb=SHARD_MB, **settings)


def _flip_byte(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_fetch_from_the_origin_is_bit_identical_and_atomic(weights, tmp_path):
    with _origin(weights) as origin:
        origin.wait_for_version(1)
        report = fetch_version([origin.url], "latest", tmp_path / "out", FAST)
        again = fetch_version([origin.url], 1, tmp_path / "out", FAST)
    assert report.version == 1 and report.full_shards == 7 and report.corrupt == 0
    assert same_files(tmp_path / "out", weights / "step_1")
    assert (tmp_path / "out" / ".shardcast.json").exists()
    assert not (tmp_path / ".out.partial").exists()
    assert again.wire_bytes == 0, "a dir already holding the version is kept as it is"


def test_a_relay_mirrors_each_new_version_and_clients_fetch_deltas(weights, tmp_path):
    tensors = random_tensors(0)
    with _origin(weights) as origin, NodeThread(upstream=[origin.url], data_dir=tmp_path / "relay") as relay:
        relay.wait_for_version(1)
        fetch_version([relay.url], 1, tmp_path / "v1", FAST)
        write_step(weights, 2, nudged(tensors))
        relay.wait_for_version(2)
        report = fetch_version([relay.url], 2, tmp_path / "v2", FAST, base=tmp_path / "v1")
        origin_sent = origin.stats()["bytes_sent"]
        manifest = relay.store.manifest(2)
    assert same_files(tmp_path / "v2", weights / "step_2")
    assert same_files(stored_files(relay.store, 2), weights / "step_2")
    assert report.delta_shards == 7 and report.delta_base == 1
    assert report.wire_bytes == manifest.delta_bytes < 0.7 * manifest.total_size
    # The origin sent each version once, to the relay: v1 whole, v2 as deltas.
    assert origin_sent == relay.store.manifest(1).total_size + manifest.delta_bytes


def test_a_version_no_source_has_is_a_clear_404(weights, tmp_path):
    with _origin(weights) as origin:
        origin.wait_for_version(1)
        with pytest.raises(VersionNotFoundError, match=r"version 7 is on none of the sources.*has \[1\]"):
            fetch_version([origin.url], 7, tmp_path / "out", FetchConfig(wait_s=0))
        response = httpx.get(f"{origin.url}/v/7/manifest")
    assert response.status_code == 404 and response.json()["error"]["versions"] == [1]
    assert not (tmp_path / "out").exists()


def test_an_unreachable_source_is_a_clear_error(tmp_path):
    with pytest.raises(SourcesUnreachableError, match="no source answered"):
        fetch_version(["http://127.0.0.1:9"], "latest", tmp_path / "out", FetchConfig(wait_s=0))


def test_a_corrupt_shard_on_a_relay_is_fetched_from_another_source(weights, tmp_path):
    with _origin(weights) as origin, NodeThread(upstream=[origin.url], data_dir=tmp_path / "relay") as relay:
        relay.wait_for_version(1)
        _flip_byte(stored_files(relay.store, 1) / "model.safetensors", 1000)  # in shard 0
        # One connection, the relay first: shard 0 comes from the relay, corrupt.
        config = FetchConfig(connections=1, wait_s=5, timeout_s=10)
        report = fetch_version([relay.url, origin.url], 1, tmp_path / "out", config)
    assert report.corrupt == 1 and report.retries == 1
    assert same_files(tmp_path / "out", weights / "step_1")


def test_a_truncated_shard_on_a_relay_is_fetched_from_another_source(weights, tmp_path):
    with _origin(weights) as origin, NodeThread(upstream=[origin.url], data_dir=tmp_path / "relay") as relay:
        relay.wait_for_version(1)
        model = stored_files(relay.store, 1) / "model.safetensors"
        model.write_bytes(model.read_bytes()[:-5000])  # the last shard is cut short
        report = fetch_version([relay.url, origin.url], 1, tmp_path / "out", FAST)
    assert report.retries >= 1
    assert same_files(tmp_path / "out", weights / "step_1")


def test_shards_that_match_no_manifest_anywhere_fail_clearly_and_write_nothing(weights, tmp_path):
    with _origin(weights) as origin:
        origin.wait_for_version(1)
        _flip_byte(stored_files(origin.store, 1) / "model.safetensors", 1000)
        config = FetchConfig(attempts=2, wait_s=5, timeout_s=10)
        with pytest.raises(ShardFetchError, match="the manifest does not match its shards"):
            fetch_version([origin.url], 1, tmp_path / "out", config)
    assert not (tmp_path / "out").exists()


def test_nodes_with_a_token_refuse_clients_without_it(weights, tmp_path):
    with _origin(weights, token="s3cret") as origin:
        relay = NodeThread(upstream=[origin.url], data_dir=tmp_path / "relay", token="r3lay",
                           fetch=FetchConfig(token="s3cret"))  # fmt: skip
        with relay:
            relay.wait_for_version(1)
            with pytest.raises(SourceAuthError, match="refused the bearer token"):
                fetch_version([relay.url], 1, tmp_path / "out", FAST)
            report = fetch_version([relay.url], 1, tmp_path / "out", FetchConfig(token="r3lay"))
        assert httpx.get(f"{origin.url}/health").status_code == 200  # health needs no token
        assert httpx.get(f"{origin.url}/versions").status_code == 401
    assert report.version == 1 and same_files(tmp_path / "out", weights / "step_1")


def test_a_node_at_its_fan_out_bound_answers_busy_and_clients_wait(weights, tmp_path):
    with _origin(weights, max_transfers=1, rate_limit_mb_s=4) as origin:
        origin.wait_for_version(1)
        reports = {}

        def fetch(name: str) -> None:
            reports[name] = fetch_version([origin.url], 1, tmp_path / name, FetchConfig(connections=4))

        threads = [threading.Thread(target=fetch, args=(f"out{i}",)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        stats = origin.stats()
    assert stats["refused_busy"] > 0 and stats["active_transfers"] == 0
    for name in ("out0", "out1"):
        assert same_files(tmp_path / name, weights / "step_1")


def test_range_requests_return_the_bytes_asked_for(weights):
    with _origin(weights) as origin:
        origin.wait_for_version(1)
        whole = httpx.get(f"{origin.url}/v/1/shards/2").content
        part = httpx.get(f"{origin.url}/v/1/shards/2", headers={"Range": "bytes=100-199"})
        beyond = httpx.get(f"{origin.url}/v/1/shards/2", headers={"Range": f"bytes={len(whole)}-"})
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    assert beyond.status_code == 416


def test_a_base_that_differs_from_the_delta_base_falls_back_to_whole_shards(weights, tmp_path):
    tensors = random_tensors(0)
    with _origin(weights) as origin:
        origin.wait_for_version(1)
        fetch_version([origin.url], 1, tmp_path / "v1", FAST)
        write_step(weights, 2, nudged(tensors))
        origin.wait_for_version(2)
        _flip_byte(tmp_path / "v1" / "model.safetensors", 300_000)  # the local copy went bad
        report = fetch_version([origin.url], 2, tmp_path / "v2", FAST, base=tmp_path / "v1")
    assert report.full_shards == 1 and report.delta_shards == 6
    assert same_files(tmp_path / "v2", weights / "step_2")


def test_an_out_dir_holding_something_else_is_refused(weights, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with _origin(weights) as origin:
        origin.wait_for_version(1)
        with pytest.raises(OutputExistsError, match="remove it or choose another --out"):
            fetch_version([origin.url], 1, tmp_path / "out", FAST)
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
