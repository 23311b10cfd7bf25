"""Shardcast on 127.0.0.1 with a ~100M-parameter checkpoint, in one run:

1. full-fetch throughput of the newest version to N clients, from the origin directly and through a
   relay tree (origin -> relays -> clients), with the origin's egress bytes in each case;
2. delta-compressed bytes per version against full bytes, after real optimizer steps of the project's
   trainer code, and one delta fetch checked bit for bit;
3. the same model trained with a rank-16 LoRA adapter, whose versions are adapter dirs: their size and
   the full fetch by the same clients from the origin.

Every node and client is its own process (`asyncrl broadcast serve|fetch`), as on separate machines; wall
times run from launching the processes to the last client's exit, start-up included in both cases.

    .venv/bin/python benchmarks/broadcast.py [--clients 8] [--relays 2] [--steps 3] [--shard-mb 8]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from trainer_throughput import make_batch, make_model_dir

from asyncrl.broadcast.manifest import Manifest
from asyncrl.config import LoraConfig, ModelConfig
from asyncrl.models import load_tokenizer
from asyncrl.trainer.config import TrainerConfig
from asyncrl.trainer.distributed import Ranks
from asyncrl.trainer.losses import masked_is
from asyncrl.trainer.model_setup import build, publish
from asyncrl.trainer.train_step import train_on_batch

MB = 1e6


def train_checkpoints(
    run_dir: Path, steps: int, tokens: int, lora: LoraConfig | None = None
) -> tuple[float, float]:
    """weights/step_0 (the initial ~100M model, or with `lora` its adapter) to step_<steps>, each after one
    AdamW step of the trainer's own code; returns (parameters, learning rate)."""
    config = TrainerConfig()
    ranks = Ranks(0, 1, torch.device("cpu"))
    model_dir = make_model_dir("100M", str(run_dir / "init"))
    model, optimizers = build(ModelConfig(path=model_dir, lora=lora), config, 0, ranks)
    tokenizer = load_tokenizer(model_dir)
    publish(run_dir, 0, model, tokenizer, ranks)
    for step in range(1, steps + 1):
        train_on_batch(model, optimizers, make_batch(tokens, step), masked_is, config, step, steps, ranks)
        publish(run_dir, step, model, tokenizer, ranks)
    return sum(p.numel() for p in model.parameters()), config.optim.lr


class Node:
    """`python -m asyncrl.broadcast serve ARGS --port 0`; its URL is read from its log."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        command = [sys.executable, "-m", "asyncrl.cli", "broadcast", "serve", "--port", "0", *args]
        self.process = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        deadline = time.monotonic() + 120
        while not (found := re.search(r"serving on (http://[\d.]+:\d+)", log.read_text())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.url = found.group(1)

    def get(self, path: str) -> dict:
        return httpx.get(f"{self.url}{path}", timeout=30).json()

    def wait_for(self, version: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while version not in self.get("/health")["versions"]:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"version {version} never appeared at {self.url}:\n{self.log.read_text()[-2000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def fetch_command(sources: list[str], version: int, out: Path, base: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "asyncrl.cli", "broadcast", "fetch", *sources, "--version", str(version),
               "--out", str(out), "--json", "--progress", "false", "--fetch.wait-s", "300"]  # fmt: skip
    return command + (["--base", str(base)] if base is not None else [])


def run_clients(commands: list[list[str]]) -> tuple[float, list[dict]]:
    """Start every client at once; (wall seconds until the last exits, their reports)."""
    start = time.perf_counter()
    clients = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands
    ]
    reports = []
    for client in clients:
        out, err = client.communicate(timeout=1800)
        if client.returncode != 0:
            raise RuntimeError(f"a client failed:\n{err[-2000:]}")
        reports.append(json.loads(out))
    return time.perf_counter() - start, reports


def same_bytes(a: Path, b: Path) -> bool:
    names = [p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "STABLE"]
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def publish_step(root: Path, origin: Node, step: int) -> float:
    """Hand the origin the trainer's step (as the trainer's atomic publish does); seconds until served."""
    start = time.perf_counter()
    (root / "trained" / "weights" / f"step_{step}").rename(root / "run" / "weights" / f"step_{step}")
    origin.wait_for(step)
    return time.perf_counter() - start


def fan_out(origin: Node, sources: list[list[str]], version: int, out: Path, bases: list[Path] | None = None,
            run: str = "run"):  # fmt: skip
    """Every client (one per sources list) fetches `version` at once; (wall s, origin egress, reports)."""
    before = origin.get("/stats")["bytes_sent"]
    commands = [
        fetch_command(urls, version, out / f"c{i}", bases[i] if bases else None)
        for i, urls in enumerate(sources)
    ]
    seconds, reports = run_clients(commands)
    expected = out.parent / run / "weights" / f"step_{version}"
    if not all(same_bytes(Path(r["path"]), expected) for r in reports):
        raise RuntimeError(f"a client's copy of version {version} differs from the trainer's")
    return seconds, origin.get("/stats")["bytes_sent"] - before, reports


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--relays", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps (versions after the first)")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per optimizer step")
    parser.add_argument("--shard-mb", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="asyncrl-broadcast-bench-") as tmp:
        root = Path(tmp)
        params, lr = train_checkpoints(root / "trained", args.steps, args.tokens)
        (root / "run" / "weights").mkdir(parents=True)
        origin = Node(["--weights-dir", str(root / "run" / "weights"), "--shard-mb", str(args.shard_mb),
                       "--keep", str(args.steps + 1)], root / "origin.log")  # fmt: skip
        # Versions 0 .. steps-1 now, one by one as during training; the last one later (part 3).
        publish_s = [publish_step(root, origin, step) for step in range(args.steps)]
        full, last = args.steps - 1, args.steps
        size = Manifest.parse(json.dumps(origin.get(f"/v/{full}/manifest"))).total_size
        shards = -(-size // int(args.shard_mb * 2**20))
        print(f"checkpoint: {params / 1e6:.1f}M parameters (float32), {size / MB:.1f} MB per version in "
              f"{shards} shards of {args.shard_mb:g} MiB; versions: the initial model, then {args.steps} "
              f"AdamW steps (lr {lr:g}) of the trainer's own code on {args.tokens} tokens each")  # fmt: skip

        # 1. A full fetch by every client: from the origin, then through fresh relays.
        origin_before = origin.get("/stats")["bytes_sent"]
        direct_s, direct_egress, _ = fan_out(origin, [[origin.url]] * args.clients, full, root / "direct")
        shutil.rmtree(root / "direct")
        start = time.perf_counter()
        relays = [
            Node(["--upstream", origin.url, "--data-dir", str(root / f"relay{j}")], root / f"relay{j}.log")
            for j in range(args.relays)
        ]
        mine = [[relays[i % args.relays].url] + [r.url for r in relays if r is not relays[i % args.relays]]
                for i in range(args.clients)]  # fmt: skip
        fan_out(origin, mine, full, root / "tree")
        tree_s = time.perf_counter() - start
        for relay in relays:  # clients may finish from one relay while another still mirrors
            relay.wait_for(full)
        tree_egress = origin.get("/stats")["bytes_sent"] - (direct_egress + origin_before)
        total = args.clients * size
        print()
        print(f"full fetch of version {full} by {args.clients} clients        wall s   MB/s to clients   "
              "origin egress MB   x version")  # fmt: skip
        for label, seconds, egress in [
            ("origin direct", direct_s, direct_egress),
            (f"relay tree: origin -> {args.relays} new relays -> clients", tree_s, tree_egress),
        ]:
            rate, times = total / seconds / MB, egress / size
            print(f"{label:<48}{seconds:>6.1f}{rate:>18.0f}{egress / MB:>19.0f}{times:>12.1f}")
        print(f"origin egress, tree / direct: {tree_egress / direct_egress:.2f} (a relay that joins takes "
              "the version whole plus its deltas, to serve clients that hold the previous one)")  # fmt: skip

        # 2. Deltas, and 3. the next version reaching the same clients through the relays, as deltas.
        before = origin.get("/stats")["bytes_sent"]
        start = time.perf_counter()
        publish_s.append(publish_step(root, origin, last))
        for relay in relays:
            relay.wait_for(last)
        relays_s = time.perf_counter() - start
        relay_egress = origin.get("/stats")["bytes_sent"] - before
        bases = [root / "tree" / f"c{i}" for i in range(args.clients)]
        clients_s, _, reports = fan_out(origin, mine, last, root / "next", bases)
        manifests = [Manifest.parse(json.dumps(origin.get(f"/v/{v}/manifest"))) for v in range(1, last + 1)]
        print()
        print(f"deltas against the previous version ({manifests[-1].delta_codec}, zstd level 1); origin "
              f"publish (checksums, deltas) {sum(publish_s[1:]) / args.steps:.1f} s per version")  # fmt: skip
        print(f"{'version':>7}{'base':>6}{'full MB':>10}{'delta MB':>10}{'ratio':>8}")
        for manifest in manifests:
            ratio = manifest.delta_bytes / manifest.total_size
            print(f"{manifest.version:>7}{manifest.delta_base!s:>6}{manifest.total_size / MB:>10.1f}"
                  f"{manifest.delta_bytes / MB:>10.1f}{ratio:>8.3f}")  # fmt: skip
        wire = sum(r["wire_bytes"] for r in reports) / args.clients
        rebuilt = sum(r["delta_shards"] for r in reports)
        print(f"version {last} to the same {args.clients} clients through the relays: the relays had it "
              f"{relays_s:.1f} s after the trainer published it (origin egress {relay_egress / MB:.0f} MB, "
              f"{relay_egress / size:.2f} x version), the clients {clients_s:.1f} s later "
              f"({wire / MB:.0f} MB each over the wire, {rebuilt} shards rebuilt from deltas, "
              "every copy bit-identical)")  # fmt: skip
        for relay in relays:
            relay.stop()
        origin.stop()

        # 3. The same model with a LoRA adapter: each version is the adapter dir alone.
        train_checkpoints(root / "lora", 1, args.tokens, LoraConfig(rank=16, alpha=32))
        (root / "lora_run" / "weights").mkdir(parents=True)
        (root / "lora" / "weights" / "step_1").rename(root / "lora_run" / "weights" / "step_1")
        lora_origin = Node(["--weights-dir", str(root / "lora_run" / "weights"), "--shard-mb",
                            str(args.shard_mb)], root / "lora_origin.log")  # fmt: skip
        lora_origin.wait_for(1)
        adapter = Manifest.parse(json.dumps(lora_origin.get("/v/1/manifest"))).total_size
        lora_s, lora_egress, _ = fan_out(
            lora_origin, [[lora_origin.url]] * args.clients, 1, root / "lora_fetch", run="lora_run"
        )
        lora_origin.stop()
        print()
        version = f"a version is {adapter / MB:.1f} MB ({adapter / size:.3f} x the whole {size / MB:.1f} MB)"
        fetched = (
            f"{args.clients} clients fetched it from the origin in {lora_s:.1f} s (whole: {direct_s:.1f} s)"
        )
        egress = f"origin egress {lora_egress / MB:.0f} MB (whole: {direct_egress / MB:.0f} MB)"
        print(f"LoRA rank 16 on every linear layer: {version}; {fetched}, {egress}")


if __name__ == "__main__":
    main()
