"""asyncrl's default job against TRL's GRPOTrainer on the same job, the same box, one after the other.

For each seed: TRL (benchmarks/trl_grpo.py in .venv-trl, installed by `make trl` when missing), then
`asyncrl rl` with the default job. Prints one table (per seed and the median) and writes one plot, the
20-step mean reward against wall time, both frameworks, all seeds. asyncrl's wall time counts from the
launch of `asyncrl rl` (its start-up included); TRL's from its first training step (its start-up, printed
apart, excluded), which favours TRL. Run nothing else on the box meanwhile.

    .venv/bin/python benchmarks/vs_trl.py [--seeds 0 1 2] [--steps N] [--plot docs/vs_trl.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from transformers import AutoConfig  # noqa: E402

from asyncrl.builtin_models import warm_model_dir  # noqa: E402
from asyncrl.inference.server_process import free_port  # noqa: E402
from asyncrl.transport.metrics import read_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TRL_PYTHON = ROOT / ".venv-trl" / "bin" / "python"
WINDOW = 20
THRESHOLDS = (0.6, 0.7, 0.75)
ROLLOUTS_PER_STEP = 128


def run_trl(model: Path, seed: int, steps: int, out: Path) -> dict:
    if not TRL_PYTHON.exists():
        subprocess.run(["make", "-C", str(ROOT), "trl"], check=True)
    log = out / f"trl_{seed}.jsonl"
    command = [str(TRL_PYTHON), str(ROOT / "benchmarks" / "trl_grpo.py"), "--model", str(model),
               "--seed", str(seed), "--steps", str(steps), "--out", str(log)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=out)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    seen = [0.0] + [line["num_tokens"] for line in lines]  # TRL counts the tokens it trained so far
    tokens = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    return {
        "startup_s": lines[0]["startup_s"],
        "times": [line["train_s"] for line in lines],
        "rewards": [line["reward"] for line in lines],
        "rollouts": [ROLLOUTS_PER_STEP] * len(lines),
        "trained_tokens": tokens,
        "generated_tokens": [ROLLOUTS_PER_STEP * line["completions/mean_length"] for line in lines],
    }


def run_asyncrl(seed: int, steps: int, out: Path) -> dict:
    run = out / f"asyncrl_{seed}"
    command = [sys.executable, "-m", "asyncrl.cli", "rl", "--output-dir", str(run), "--seed", str(seed),
               "--max-steps", str(steps), "--inference.port", str(free_port())]  # fmt: skip
    launched = time.time()
    subprocess.run(command, check=True, capture_output=True)
    batches, trainer = read_metrics(run, "orchestrator"), read_metrics(run, "trainer")
    sampled = [b["rollouts_trained"] + b["dropped_zero_advantage"] + b["dropped_too_long"]
               + b["dropped_difficulty"] + b["dropped_errors"] + b["discarded_stale"]
               for b in batches]  # fmt: skip
    # Completion tokens of every sampled rollout: the batch's (trained ones) scaled to all it sampled.
    previous = [launched] + [b["time"] for b in batches[:-1]]
    generated = [b["tokens_per_s"] * (b["time"] - t) * n / b["rollouts_trained"]
                 for b, t, n in zip(batches, previous, sampled, strict=True)]  # fmt: skip
    return {
        "startup_s": batches[0]["time"] - launched,
        "times": [b["time"] - launched for b in batches],
        "rewards": [b["reward_mean"] for b in batches],
        "rollouts": sampled,
        "trained_tokens": [t["tokens_per_s"] * t["step_s"] for t in trainer],
        "generated_tokens": generated,
        "step_times": [t["time"] - launched for t in trainer],
    }


def moving_mean(values: list[float]) -> list[float | None]:
    """The mean of each value and the WINDOW - 1 before it (None before WINDOW values)."""
    return [
        None if i + 1 < WINDOW else statistics.fmean(values[i + 1 - WINDOW : i + 1])
        for i in range(len(values))
    ]


def time_to(run: dict, threshold: float) -> float | None:
    for t, mean in zip(run["times"], moving_mean(run["rewards"]), strict=True):
        if mean is not None and mean >= threshold:
            return t
    return None


def reward_at(run: dict, wall_s: float) -> float | None:
    """The 20-step mean reward of the last step done by `wall_s`."""
    done = [m for t, m in zip(run["times"], moving_mean(run["rewards"]), strict=True) if t <= wall_s]
    return done[-1] if done else None


def figures(run: dict, trl_end_s: float, flops_per_s: float) -> dict[str, float | None]:
    times = run.get("step_times", run["times"])
    span = times[-1] - times[0]
    steps_per_s = (len(times) - 1) / span
    return {
        **{f"time to {x}": time_to(run, x) for x in THRESHOLDS},
        "steps/s": steps_per_s,
        "rollouts/s": sum(run["rollouts"][1:]) / span,
        "trained tok/s": sum(run["trained_tokens"][1:]) / span,
        "reward at TRL's end": reward_at(run, trl_end_s),
        "startup s": run["startup_s"],
        "GFLOP/s used": flops_per_s / 1e9,
    }


def model_gflops(model: Path, threads: int) -> tuple[float, int]:
    """The box's matmul GFLOP/s on the model's linear layers (a 4096-token micro-batch, `threads`
    threads, forward shapes), and the model's parameter count."""
    config = AutoConfig.from_pretrained(model)
    h, i, kv = config.hidden_size, config.intermediate_size, config.num_key_value_heads
    kv_dim = kv * h // config.num_attention_heads
    shapes = [(h, h), (h, kv_dim), (h, kv_dim), (h, h), (h, i), (h, i), (i, h)]
    params = config.num_hidden_layers * sum(a * b for a, b in shapes) + config.vocab_size * h
    torch.set_num_threads(threads)
    x = {a: torch.randn(4096, a) for a in {a for a, _ in shapes}}
    w = [torch.randn(a, b) for a, b in shapes]
    for _ in range(3):
        for weight in w:
            x[weight.shape[0]] @ weight
    start, rounds = time.perf_counter(), 0
    while time.perf_counter() - start < 2.0:
        for weight in w:
            x[weight.shape[0]] @ weight
        rounds += 1
    flops = rounds * sum(2 * 4096 * a * b for a, b in shapes)
    return flops / (time.perf_counter() - start) / 1e9, params


def work_per_s(run: dict, params: int) -> float:
    """FLOPs per second the run's training (6 x params per trained token) and generation (2 x params
    per generated token) needed, over its whole span."""
    times = run.get("step_times", run["times"])
    span = times[-1] - times[0]
    return (
        6 * params * sum(run["trained_tokens"][1:]) + 2 * params * sum(run["generated_tokens"][1:])
    ) / span


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def print_table(rows: dict[str, dict[str, float | None]], gflops: float) -> None:
    names = list(next(iter(rows.values())))
    width = max(map(len, rows)) + 2
    print(f"{'':{width}}" + "".join(f"{name:>20}" for name in names))
    for label, values in rows.items():
        print(f"{label:{width}}" + "".join(f"{fmt(values[name]):>20}" for name in names))
    print(
        f"the box: {gflops:.1f} GFLOP/s (2 threads, the model's matmuls); 'GFLOP/s used' is the work a run's "
        "training (6 x params x trained tokens) and generation (2 x params x generated tokens) needed per s"
    )


def median_row(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    out = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        out[name] = None if None in values else statistics.median(values)
    return out


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(8, 5))
    for color, (framework, seeds) in zip(("C0", "C3"), runs.items(), strict=True):
        for i, run in enumerate(seeds):
            means = moving_mean(run["rewards"])
            points = [(t, m) for t, m in zip(run["times"], means, strict=True) if m is not None]
            axis.plot(*zip(*points, strict=True), color=color, alpha=0.8,
                      label=framework if i == 0 else None)  # fmt: skip
    axis.set_xlabel("wall time (s): asyncrl from its launch, TRL from its first step")
    axis.set_ylabel(f"reward, mean of {WINDOW} steps")
    axis.set_title("the default job: asyncrl vs TRL GRPOTrainer, 2 CPU cores")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    default_steps = tomllib.loads((ROOT / "configs" / "reverse_text.toml").read_text())["max_steps"]
    parser.add_argument("--steps", type=int, default=default_steps, help="default: the default job's")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "vs_trl.png")
    parser.add_argument("--out", type=Path, default=None, help="keep the run dirs here")
    args = parser.parse_args()
    model = warm_model_dir()
    gflops, params = model_gflops(model, threads=2)
    out = args.out or Path(tempfile.mkdtemp(prefix="vs_trl_"))
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {"asyncrl": [], "TRL": []}
    rows: dict[str, dict] = {}
    for seed in args.seeds:
        trl = run_trl(model, seed, args.steps, out)
        ours = run_asyncrl(seed, args.steps, out)
        runs["TRL"].append(trl)
        runs["asyncrl"].append(ours)
        for name, run in (("TRL", trl), ("asyncrl", ours)):
            rows[f"{name} seed {seed}"] = figures(run, trl["times"][-1], work_per_s(run, params))
        print(f"seed {seed} done", file=sys.stderr)
    for name in ("TRL", "asyncrl"):
        rows[f"{name} median"] = median_row([v for k, v in rows.items() if k.startswith(f"{name} seed")])
    ratios = {}
    for name in rows["TRL median"]:
        a, b = rows["asyncrl median"][name], rows["TRL median"][name]
        ratios[name] = None if a is None or not b else a / b
    rows["asyncrl / TRL (medians)"] = ratios
    print_table(rows, gflops)
    plot(runs, args.plot)
    print(f"plot: {args.plot}; run dirs: {out}")


if __name__ == "__main__":
    main()
