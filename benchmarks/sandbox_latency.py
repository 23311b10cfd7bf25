"""Sandbox latency and throughput: the warm pool against a cold `bwrap ... python3` per execution.

Two workloads, a trivial snippet and a 10-case test run (ten executions, each judged), each at
concurrency 1 and 64, warm and cold side by side: p50/p95/p99 latency of one operation, executions per
second, and the warm/cold ratios. Cold executions get the same bwrap isolation (namespaces, read-only
/usr, seccomp, capabilities dropped) around a fresh `python3 -I -c CODE` each (the same interpreter as the
warm pool's). Warm runs in two halves, before and after cold, so that on a machine whose load drifts
(CPUs shared with other work) both sides meet the same load on average. Targets (issue 7): warm p50
under 10 ms, warm throughput at least 10x cold.

    python benchmarks/sandbox_latency.py [--scale 1.0] [--pool-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asyncrl.sandbox import IOCase, Result, SandboxPool
from asyncrl.sandbox.config import SandboxConfig
from asyncrl.sandbox.isolation import HOST_ENV, bwrap_command, seccomp_fd
from asyncrl.sandbox.tests_runner import cases_report

SNIPPET = "print(sum(range(100)))\n"
SNIPPET_OUTPUT = "4950\n"
ADDER = "a, b = map(int, input().split())\nprint(a + b)\n"
CASES = [IOCase(input=f"{i} {i * 7}\n", output=f"{i * 8}\n") for i in range(10)]
MODES = ("warm", "cold")
# Operations per (workload, concurrency, mode) at --scale 1: enough for stable percentiles, while the cold
# side (tens of ms of CPU per execution) stays within a minute on two cores.
RUNS = {
    ("trivial", 1, "warm"): 300,
    ("trivial", 1, "cold"): 40,
    ("trivial", 64, "warm"): 1280,
    ("trivial", 64, "cold"): 128,
    ("10 cases", 1, "warm"): 40,
    ("10 cases", 1, "cold"): 6,
    ("10 cases", 64, "warm"): 256,
    ("10 cases", 64, "cold"): 64,
}


Operation = Callable[[], Awaitable[int]]
"""One warm or cold operation; it returns how many executions it made."""


@dataclass
class Measurement:
    runs: int
    executions: int
    latencies_s: list[float]
    wall_s: float

    def __add__(self, other: Measurement) -> Measurement:
        return Measurement(
            self.runs + other.runs,
            self.executions + other.executions,
            self.latencies_s + other.latencies_s,
            self.wall_s + other.wall_s,
        )

    def percentile_ms(self, p: int) -> float:
        if len(self.latencies_s) < 2:
            return self.latencies_s[0] * 1000
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[p - 1] * 1000

    @property
    def per_s(self) -> float:
        return self.executions / self.wall_s


async def measure(operation: Operation, runs: int, concurrency: int) -> Measurement:
    """`runs` operations by `concurrency` callers at once; each operation returns its executions."""
    latencies: list[float] = []
    executions = 0
    remaining = iter(range(runs))

    async def caller() -> None:
        nonlocal executions
        for _ in remaining:
            start = time.perf_counter()
            done = await operation()
            latencies.append(time.perf_counter() - start)
            executions += done

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return Measurement(runs, executions, latencies, time.perf_counter() - start)


async def side_by_side(
    ops: dict[tuple[str, str], Operation], workload: str, concurrency: int, scale: float
) -> dict[str, Measurement]:
    """Cold between two halves of warm: should the machine's load drift meanwhile, both meet it alike."""
    runs = {mode: max(concurrency, 2, round(RUNS[(workload, concurrency, mode)] * scale)) for mode in MODES}
    warm_half = max(concurrency, runs["warm"] // 2)
    first = await measure(ops[(workload, "warm")], warm_half, concurrency)
    cold = await measure(ops[(workload, "cold")], runs["cold"], concurrency)
    second = await measure(ops[(workload, "warm")], warm_half, concurrency)
    return {"warm": first + second, "cold": cold}


async def cold_execute(config: SandboxConfig, code: str, stdin: str = "") -> Result:
    """A fresh sandbox and interpreter for one execution."""
    fd = seccomp_fd()
    start = time.perf_counter()
    try:
        process = await asyncio.create_subprocess_exec(
            *bwrap_command(config, [config.python, "-I", "-c", code], fd, warm=False),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=HOST_ENV,
            pass_fds=(fd,),
        )
    finally:
        os.close(fd)
    stdout, stderr = await process.communicate(stdin.encode())
    return Result(
        stdout=stdout.decode(),
        stderr=stderr.decode(),
        exit_code=process.returncode or 0,
        timed_out=False,
        oom_killed=False,
        output_truncated=False,
        duration_s=time.perf_counter() - start,
    )


def operations(pool: SandboxPool, config: SandboxConfig) -> dict[tuple[str, str], Operation]:
    async def warm_snippet() -> int:
        assert (await pool.execute(SNIPPET)).stdout == SNIPPET_OUTPUT
        return 1

    async def cold_snippet() -> int:
        assert (await cold_execute(config, SNIPPET)).stdout == SNIPPET_OUTPUT
        return 1

    async def warm_cases() -> int:
        assert (await pool.run_tests(ADDER, CASES)).pass_fraction == 1.0
        return len(CASES)

    async def cold_cases() -> int:
        results = [await cold_execute(config, ADDER, case.input) for case in CASES]
        assert cases_report(CASES, results).pass_fraction == 1.0
        return len(CASES)

    return {
        ("trivial", "warm"): warm_snippet,
        ("trivial", "cold"): cold_snippet,
        ("10 cases", "warm"): warm_cases,
        ("10 cases", "cold"): cold_cases,
    }


async def main(scale: float, pool_size: int) -> None:
    config = SandboxConfig(pool_size=pool_size, max_queue=1024)
    async with SandboxPool(config) as pool:
        ops = operations(pool, config)
        for mode in ("warm", "cold"):  # page cache and pool warm-up, unmeasured
            await measure(ops[("trivial", mode)], 8, 4)
        print(
            f"sandbox latency: warm pool of {pool_size} sandboxes vs cold bwrap + python3 per execution; "
            f"{os.cpu_count()} CPUs"
        )
        header = ("runs", "p50 ms", "p95 ms", "p99 ms", "exec/s")
        print(f"{'workload':<10}{'conc':>5}  {'mode':<5}" + "".join(f"{h:>9}" for h in header))
        results: dict[tuple[str, int, str], Measurement] = {}
        for workload, concurrency in dict.fromkeys((w, c) for w, c, _ in RUNS):
            row = await side_by_side(ops, workload, concurrency, scale)
            for mode, m in row.items():
                results[(workload, concurrency, mode)] = m
                print(
                    f"{workload:<10}{concurrency:>5}  {mode:<5}{m.runs:>9}{m.percentile_ms(50):>9.1f}"
                    f"{m.percentile_ms(95):>9.1f}{m.percentile_ms(99):>9.1f}{m.per_s:>9.0f}"
                )
    print("warm vs cold:")
    throughput_ratios = []
    for workload in ("trivial", "10 cases"):
        for concurrency in (1, 64):
            warm, cold = results[(workload, concurrency, "warm")], results[(workload, concurrency, "cold")]
            throughput_ratios.append(warm.per_s / cold.per_s)
            latency_ratio = cold.percentile_ms(50) / warm.percentile_ms(50)
            print(
                f"  {workload:<9} concurrency {concurrency:>2}: p50 {latency_ratio:5.1f}x lower, "
                f"throughput {warm.per_s / cold.per_s:5.1f}x higher"
            )
    warm_p50 = results[("trivial", 1, "warm")].percentile_ms(50)
    print(
        f"targets: warm p50 < 10 ms: {'met' if warm_p50 < 10 else 'MISSED'} ({warm_p50:.1f} ms); "
        f"warm throughput >= 10x cold: {'met' if min(throughput_ratios) >= 10 else 'MISSED'} "
        f"(lowest {min(throughput_ratios):.1f}x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every number of runs by this")
    parser.add_argument("--pool-size", type=int, default=2 * (os.cpu_count() or 1), help="warm sandboxes")
    args = parser.parse_args()
    asyncio.run(main(args.scale, args.pool_size))
