"""Faults with real processes: a relay serving a corrupt shard, a relay killed mid-transfer, a client
killed mid-fetch. Each fetch ends with the origin's weights, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from asyncrl.broadcast.manifest import Manifest
from tests.integration.broadcast.nodes import (
    NodeProcess,
    copy_step,
    node_stats,
    same_files,
    stored_files,
    wait_until,
)

SHARD_MB = "0.25"  # the tiny model (~3.3 MB) in 14 shards


@pytest.fixture()
def weights(tmp_path, tiny_dir) -> Path:
    copy_step(tiny_dir, tmp_path / "weights", 1)
    return tmp_path / "weights"


def _origin(weights: Path, tmp_path: Path, *extra: str) -> NodeProcess:
    args = [
        "--weights-dir",
        str(weights),
        "--data-dir",
        str(tmp_path / "origin"),
        "--shard-mb",
        SHARD_MB,
        *extra,
    ]
    return NodeProcess(args, tmp_path / "origin.log")


def _relay(upstream: str, tmp_path: Path, name: str, *extra: str) -> NodeProcess:
    args = ["--upstream", upstream, "--data-dir", str(tmp_path / name), *extra]
    return NodeProcess(args, tmp_path / f"{name}.log")


def _fetch_command(sources: list[str], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "asyncrl.cli", "broadcast", "fetch", *sources, "--version", "1", "--out",
            str(out), "--json", "--progress", "false", "--fetch.timeout-s", "10", *extra]  # fmt: skip


def _fetch(sources: list[str], out: Path, *extra: str) -> dict:
    result = subprocess.run(_fetch_command(sources, out, *extra), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _done_shards(partial: Path) -> set[int]:
    path = partial / "done"
    lines = path.read_text().splitlines() if path.exists() else []
    return {int(line.split()[1]) for line in lines if line.startswith("shard ")}


@pytest.mark.slow
def test_a_corrupt_shard_on_a_relay_is_detected_and_fetched_from_the_origin(weights, tmp_path):
    with _origin(weights, tmp_path) as origin, _relay(origin.url, tmp_path, "relay") as relay:
        relay.wait_for_version(1)
        model = stored_files(tmp_path / "relay", 1) / "model.safetensors"
        data = bytearray(model.read_bytes())
        data[100] ^= 0x01  # one bit of shard 0, after the relay checked it
        model.write_bytes(bytes(data))
        # One connection and the relay listed first: shard 0 is asked of the relay.
        report = _fetch([relay.url, origin.url], tmp_path / "out", "--fetch.connections", "1")
    assert report["corrupt"] == 1
    assert same_files(tmp_path / "out", weights / "step_1")


@pytest.mark.slow
def test_a_relay_killed_mid_transfer_leaves_the_fetch_to_the_other_source(weights, tmp_path):
    with (
        _origin(weights, tmp_path) as origin,
        _relay(origin.url, tmp_path, "slow", "--rate-limit-mb-s", "0.05") as slow,  # a shard takes ~5 s
    ):
        slow.wait_for_version(1)
        client = subprocess.Popen(
            _fetch_command([slow.url, origin.url], tmp_path / "out", "--fetch.connections", "2"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(lambda: node_stats(slow.url)["bytes_sent"] > 0, 60, "a transfer from the relay")
        slow.kill()
        out, err = client.communicate(timeout=300)
    assert client.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["retries"] >= 1 and 0 < report["by_source"].get(slow.url, 0) < 256 << 10
    # The cut-off shard's bytes already received were kept: the origin was asked only for the rest.
    assert report["wire_bytes"] == report["total_bytes"]
    assert same_files(tmp_path / "out", weights / "step_1")


@pytest.mark.slow
def test_a_client_killed_mid_fetch_resumes_without_refetching_finished_shards(weights, tmp_path):
    out, partial = tmp_path / "out", tmp_path / ".out.partial"
    with _origin(weights, tmp_path, "--rate-limit-mb-s", "1") as origin:  # ~3 s for the whole version
        origin.wait_for_version(1)
        manifest = Manifest.parse((tmp_path / "origin" / "v_1" / "manifest.json").read_bytes())
        first = subprocess.Popen(
            _fetch_command([origin.url], out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: len(_done_shards(partial)) >= 4 or first.poll() is not None, 120, "4 shards")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        finished = _done_shards(partial)
        assert 4 <= len(finished) < len(manifest.shards) and not out.exists()

        report = _fetch([origin.url], out)
        served = node_stats(origin.url)["responses"]
    assert report["reused_shards"] == len(finished)
    assert report["full_shards"] == len(manifest.shards) - len(finished)
    for index in finished:
        assert served[f"1/shards/{index}"] == 1, f"shard {index} was sent again"
    assert same_files(out, weights / "step_1")
    assert not partial.exists()
