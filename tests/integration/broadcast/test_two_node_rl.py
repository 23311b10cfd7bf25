"""RL across two "nodes" on one box: the trainer and the orchestrator share run dir A; the inference server
has its own dir B and gets every new policy only over HTTP, origin -> relay -> server."""

from __future__ import annotations

import json

import pytest

from asyncrl.broadcast.config import InferenceBroadcastConfig
from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess
from asyncrl.transport.layout import weights_dir
from asyncrl.transport.metrics import read_metrics
from tests.integration.broadcast.nodes import NodeProcess, node_stats, same_files
from tests.integration.orchestrator.test_rl_processes import STEPS
from tests.integration.orchestrator.test_rl_processes import _run_rl as run_rl


@pytest.mark.slow
def test_rl_runs_with_weights_reaching_the_inference_node_only_through_origin_and_relay(tmp_path):
    run_a, node_b = tmp_path / "a", tmp_path / "b"
    node_b.mkdir()
    inference = InferenceConfig(
        port=0, num_threads=1, broadcast=InferenceBroadcastConfig(dir=node_b / "weights", keep=STEPS)
    )
    origin_args = ["--weights-dir", str(run_a / "weights"), "--shard-mb", "0.5"]

    def relay_args(upstream: str) -> list[str]:
        return ["--upstream", upstream, "--data-dir", str(tmp_path / "relay")]

    with (
        NodeProcess(origin_args, tmp_path / "origin.log") as origin,
        NodeProcess(relay_args(origin.url), tmp_path / "relay.log") as relay,
        InferenceServerProcess(ModelConfig(path="tiny"), inference, 0, node_b / "server.log") as server,
    ):  # fmt: skip
        # The same three-process run as tests/integration/orchestrator, with broadcast sources.
        run_rl(run_a, server.url, "--orchestrator.weights.sources", json.dumps([relay.url]),
               "--orchestrator.async-level", "1", "--orchestrator.max-off-policy-steps", "2")  # fmt: skip
        relay_sent = node_stats(relay.url)["bytes_sent"]
        origin_responses = node_stats(origin.url)["responses"]

    metrics = read_metrics(run_a, "orchestrator")
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    assert all(1 <= m["off_policy_max"] <= 2 for m in metrics)
    assert max(m["policy_version"] for m in metrics) >= 1, "no new policy reached the server"

    # Every version the server loaded came over HTTP into B, bit for bit the trainer's.
    fetched = sorted(int(p.name.removeprefix("step_")) for p in (node_b / "weights").glob("step_*"))
    assert fetched and fetched[0] >= 1
    for step in fetched:
        assert same_files(node_b / "weights" / f"step_{step}", weights_dir(run_a, step))
    server_log = (node_b / "server.log").read_text()
    assert str(run_a) not in server_log, "the inference server was pointed at run dir A"
    assert f"fetched version {fetched[0]} into {node_b / 'weights'}" in server_log
    # The relay fed the server; the origin fed only the relay (each shard of a version once).
    assert relay_sent > 0
    assert origin_responses and max(origin_responses.values()) == 1
