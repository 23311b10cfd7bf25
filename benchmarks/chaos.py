"""The default job under fire: a random process of the run SIGKILLed about every 20 seconds, beside an
undisturbed run of the same seed, one after the other.

Both runs use the job's settings as they are (launcher.restarts bounds crashes in a row, and one kind is
killed about once a minute); the kills cycle through the trainer, the orchestrator and the inference
server in shuffled rounds, so each kind dies about as often as the others. Reported side by side: the
final reward (mean of the last 5 steps), wall time, and the checks that nothing was lost or done twice:
trainer steps unique and contiguous (metrics.jsonl as the surviving run wrote it, plus how many lines a
restart replaced), and every task handed out accounted for once (trained, dropped by a filter, or still
pending at the end), from the orchestrator's figures and its last saved progress.

    .venv/bin/python benchmarks/chaos.py [--every-s 20] [--seed 0] [--out runs/chaos]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from asyncrl.inference.server_process import free_port
from asyncrl.transport.batches import load_progress
from asyncrl.transport.layout import metrics_file, rollouts_dir
from asyncrl.transport.metrics import read_metrics

KINDS = ("trainer", "orchestrator", "inference")
DROPPED = ("dropped_zero_advantage", "dropped_too_long", "dropped_difficulty", "discarded_stale")


def pid_of(run: Path, name: str) -> int | None:
    pattern = f"asyncrl.cli {name} -c {run / 'logs' / name}.toml"
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return int(found[0]) if len(found) == 1 else None


def killer(run: Path, every_s: float, rng: random.Random, done: threading.Event, kills: list) -> None:
    """SIGKILL a process of the run every ~every_s seconds (uniform in [0.75, 1.25] x), kinds in turn."""
    started = time.monotonic()
    queue: list[str] = []
    while not done.wait(rng.uniform(0.75, 1.25) * every_s):
        if not queue:
            queue = rng.sample(KINDS, len(KINDS))
        name = queue.pop(0)
        pid = pid_of(run, name)
        if pid is None:  # restarting right now: the next kind instead
            continue
        os.kill(pid, signal.SIGKILL)
        kills.append((round(time.monotonic() - started), name))


def run_job(out: Path, chaos: bool, every_s: float, seed: int) -> dict:
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "--output-dir", str(out),
               "--inference.port", str(free_port()), "--seed", str(seed)]  # fmt: skip
    started = time.monotonic()
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    done, kills = threading.Event(), []
    thread = threading.Thread(target=killer, args=(out, every_s, random.Random(seed), done, kills))
    if chaos:
        # Kills start once the job runs: the built-in model is built before any process starts.
        while not (out / "logs" / "trainer.toml").exists() and job.poll() is None:
            time.sleep(0.2)
        thread.start()
    stdout, _ = job.communicate()
    done.set()
    if chaos:
        thread.join()
    if job.returncode:
        raise SystemExit(f"{out}: asyncrl rl exited {job.returncode}:\n{stdout[-2000:]}")
    return {"wall_s": time.monotonic() - started, "kills": kills, **figures(out)}


def figures(run: Path) -> dict:
    orchestrator = read_metrics(run, "orchestrator")
    trainer = [m["step"] for m in read_metrics(run, "trainer")]
    raw = [json.loads(line) for line in metrics_file(run).read_text().splitlines() if line.startswith("{")]
    group_size = 4  # the default job's
    accounted = sum(m["rollouts_trained"] + sum(m[k] for k in DROPPED) for m in orchestrator) / group_size
    last = orchestrator[-1]["step"]
    progress = load_progress(rollouts_dir(run, last))
    return {
        "reward": sum(m["reward_mean"] for m in orchestrator[-5:]) / 5,
        "trainer_steps_ok": trainer == list(range(1, last + 1)),
        "replaced_lines": sum(r["component"] == "trainer" for r in raw) - len(trainer),
        "handed_out": progress["cursor"],
        "accounted": accounted + len(progress["pending"]),
        "restarts": [e["process"] for e in read_metrics(run, "launcher") if e["event"] == "restart"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--every-s", type=float, default=20.0, help="mean seconds between kills")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/chaos"))
    args = parser.parse_args()
    calm = run_job(args.out / "undisturbed", False, args.every_s, args.seed)
    fire = run_job(args.out / "disturbed", True, args.every_s, args.seed)
    kinds = ", ".join(f"{k} {sum(name == k for _, name in fire['kills'])}" for k in KINDS)
    rows = [
        ("final reward (mean of the last 5 steps)", f"{calm['reward']:.3f}", f"{fire['reward']:.3f}"),
        ("wall time", f"{calm['wall_s'] / 60:.1f} min", f"{fire['wall_s'] / 60:.1f} min"),
        ("processes killed", "0", f"{len(fire['kills'])} ({kinds})"),
        ("restarts recorded in metrics.jsonl", str(len(calm["restarts"])), str(len(fire["restarts"]))),
        ("trainer steps unique and contiguous", str(calm["trainer_steps_ok"]), str(fire["trainer_steps_ok"])),
        ("trainer lines a restart replaced", str(calm["replaced_lines"]), str(fire["replaced_lines"])),
        ("tasks handed out / accounted for", f"{calm['handed_out']} / {calm['accounted']:.0f}",
         f"{fire['handed_out']} / {fire['accounted']:.0f}"),
    ]  # fmt: skip
    print(f"{'':<42}{'undisturbed':>16}  {'disturbed':>40}")
    for label, a, b in rows:
        print(f"{label:<42}{a:>16}  {b:>40}")
    overhead = (fire["wall_s"] / calm["wall_s"] - 1) * 100
    print(f"\nreward difference {fire['reward'] - calm['reward']:+.3f} (target within 0.03); "
          f"wall-time overhead {overhead:+.0f}%")  # fmt: skip
    print("kills (s after the job started, process):", ", ".join(f"{t}s {n}" for t, n in fire["kills"]))


if __name__ == "__main__":
    main()
