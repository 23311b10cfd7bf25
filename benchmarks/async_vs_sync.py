"""Synchronous (async_level=0) vs asynchronous (async_level=2) RL on the same job, in one run.

The environment adds a fixed latency to every rollout, as tool calls and sandboxes do. Synchronous
RL pays that latency and the trainer step one after the other; asynchronous RL overlaps them. Prints
steps/s, the share of the trainer's time spent waiting for data, and the speed-up.

    .venv/bin/python benchmarks/async_vs_sync.py [--steps 8] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asyncrl.inference.server_process import free_port
from asyncrl.transport.metrics import read_metrics


def run(
    async_level: int, steps: int, latency: float, batch: int, inflight: int, out: Path
) -> dict[str, float]:
    command = [
        sys.executable, "-m", "asyncrl.cli", "rl", "--output-dir", str(out), "--max-steps", str(steps),
        "--inference.port", str(free_port()), "--orchestrator.async-level", str(async_level),
        "--orchestrator.max-off-policy-steps", str(async_level + 1),
        "--orchestrator.env.args", json.dumps({"latency_s": latency}),
        "--orchestrator.batch-size", str(batch), "--orchestrator.group-size", "8",
        "--orchestrator.max-inflight", str(inflight), "--orchestrator.drop-zero-advantage", "false",
        "--orchestrator.sampling.max-tokens", "24", "--trainer.checkpoint.interval", "0",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    # Steady state: from the second step on (start-up and the first batch cost both runs the same).
    trainer = read_metrics(out, "trainer")[1:]
    wait = sum(m["wait_s"] for m in trainer)
    busy = sum(m["step_s"] for m in trainer)
    return {
        "steps_per_s": len(trainer) / (wait + busy),
        "wait_share": wait / (wait + busy),
        "seconds": elapsed,
        "step_s": busy / max(1, len(trainer)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds added to every rollout")
    parser.add_argument("--batch", type=int, default=64, help="rollouts per step (groups of 8)")
    parser.add_argument(
        "--inflight",
        type=int,
        help="rollouts in flight at most, both runs (default: 3 batches, what async_level=2 can use)",
    )
    args = parser.parse_args()
    inflight = args.inflight or 3 * args.batch
    with tempfile.TemporaryDirectory() as tmp:
        sync = run(0, args.steps, args.latency, args.batch, inflight, Path(tmp) / "sync")
        asynchronous = run(2, args.steps, args.latency, args.batch, inflight, Path(tmp) / "async")
    print(
        f"{args.steps} steps, {args.latency:.2f}s added per rollout, batch {args.batch} (groups of 8), "
        f"at most {inflight} rollouts in flight"
    )
    print("steps/s and wait share from step 2 on; wall s includes start-up")
    print(f"{'':<14}{'steps/s':>10}{'wait share':>12}{'trainer step s':>16}{'wall s':>9}")
    for name, r in (("async_level=0", sync), ("async_level=2", asynchronous)):
        print(
            f"{name:<14}{r['steps_per_s']:>10.3f}{r['wait_share']:>12.1%}{r['step_s']:>16.2f}{r['seconds']:>9.1f}"
        )
    print(f"speed-up: {asynchronous['steps_per_s'] / sync['steps_per_s']:.2f}x")


if __name__ == "__main__":
    main()
