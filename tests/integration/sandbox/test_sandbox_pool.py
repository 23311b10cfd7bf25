"""The warm pool itself (the local API): latency, concurrency, and replacing sandboxes that die."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time

import pytest

from asyncrl.sandbox import SandboxCrashedError, SandboxPool
from asyncrl.sandbox.config import SandboxConfig


def _bwrap_pids(pool: SandboxPool) -> list[int]:
    return [sandbox._process.pid for sandbox in pool._sandboxes]


async def _wait_for_idle(pool: SandboxPool, idle: int) -> None:
    deadline = time.monotonic() + 30
    while pool.stats()["idle"] < idle:
        assert time.monotonic() < deadline, pool.stats()
        await asyncio.sleep(0.02)


def test_warm_executions_take_milliseconds():
    async def scenario() -> list[float]:
        async with SandboxPool(SandboxConfig(pool_size=1)) as pool:
            seconds = []
            for _ in range(20):
                start = time.perf_counter()
                assert (await pool.execute("print(6 * 7)")).stdout == "42\n"
                seconds.append(time.perf_counter() - start)
            return seconds

    # A cold bwrap + python3 takes ~50-100 ms; a warm execution a few.
    assert statistics.median(asyncio.run(scenario())) < 0.05


def test_many_concurrent_executions_share_a_small_pool():
    async def scenario() -> tuple[list[str], dict[str, int]]:
        async with SandboxPool(SandboxConfig(pool_size=2)) as pool:
            results = await asyncio.gather(*(pool.execute(f"print({i} * 2)") for i in range(32)))
            return [r.stdout for r in results], pool.stats()

    outputs, stats = asyncio.run(scenario())
    assert outputs == [f"{i * 2}\n" for i in range(32)]
    assert stats == {"pool_size": 2, "idle": 2, "busy": 0, "queued": 0}


def test_a_sandbox_killed_while_idle_is_replaced():
    async def scenario() -> tuple[str, list[int], list[int]]:
        async with SandboxPool(SandboxConfig(pool_size=1)) as pool:
            before = _bwrap_pids(pool)
            os.kill(before[0], signal.SIGKILL)
            await next(iter(pool._sandboxes))._process.wait()
            result = await pool.execute("print('on the replacement')")
            return result.stdout, before, _bwrap_pids(pool)

    stdout, before, after = asyncio.run(scenario())
    assert stdout == "on the replacement\n" and len(after) == 1 and after != before


def test_a_sandbox_killed_mid_execution_fails_that_execution_only():
    async def scenario() -> str:
        async with SandboxPool(SandboxConfig(pool_size=1)) as pool:
            running = asyncio.create_task(pool.execute("import time\ntime.sleep(10)"))
            await asyncio.sleep(0.3)
            os.kill(_bwrap_pids(pool)[0], signal.SIGKILL)
            with pytest.raises(SandboxCrashedError, match="being replaced"):
                await running
            return (await pool.execute("print('next one runs')")).stdout

    assert asyncio.run(scenario()) == "next one runs\n"


def test_a_cancelled_execution_does_not_leave_its_sandbox_out_of_step():
    async def scenario() -> tuple[str, dict[str, int]]:
        async with SandboxPool(SandboxConfig(pool_size=1)) as pool:
            running = asyncio.create_task(pool.execute("import time\ntime.sleep(10)\nprint('late')"))
            await asyncio.sleep(0.3)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            stdout = (await pool.execute("print('fresh answer')")).stdout
            await _wait_for_idle(pool, 1)
            return stdout, pool.stats()

    stdout, stats = asyncio.run(scenario())
    assert stdout == "fresh answer\n" and stats["idle"] == 1
