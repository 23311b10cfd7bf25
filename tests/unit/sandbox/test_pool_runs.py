"""How the pool spreads a run of executions over sandboxes: all of it goes to one sandbox at once, and what
a sandbox left unfit for more could not run goes to another, in order."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncrl.sandbox import SandboxPool
from asyncrl.sandbox.config import SandboxConfig


class FakeSandbox:
    """Answers each request with its own name and the request's code; unfit for more after `fit_for` runs."""

    def __init__(self, name: str, fit_for: int | None = None) -> None:
        self.name, self.fit_for, self.reusable, self.runs = name, fit_for, True, 0
        self.batches: list[int] = []

    @property
    def alive(self) -> bool:
        return self.reusable

    async def run(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.batches.append(len(requests))
        answers = []
        for request in requests:
            answers.append(_answer(self.name + request["code"]))
            self.runs += 1
            if self.runs == self.fit_for:
                self.reusable = False
                break
        return answers

    def kill(self) -> None:
        self.reusable = False


def _answer(stdout: str) -> dict[str, Any]:
    flags = dict.fromkeys(("timed_out", "oom_killed", "output_truncated"), False)
    return {"stdout": stdout, "stderr": "", "exit_code": 0, "duration_s": 0.0, **flags}


def _run(pool: SandboxPool, codes: list[str]) -> list[str]:
    return [result.stdout for result in asyncio.run(pool._run([{"code": code} for code in codes]))]


def _pool(*sandboxes: FakeSandbox, monkeypatch) -> SandboxPool:
    async def no_replacement(self: SandboxPool, retired: FakeSandbox) -> None:
        pass

    monkeypatch.setattr(SandboxPool, "_replace", no_replacement)
    pool = SandboxPool(SandboxConfig(pool_size=len(sandboxes)))
    pool._sandboxes = set(sandboxes)
    pool._idle = list(reversed(sandboxes))  # the first one is leased first
    return pool


def test_a_run_goes_to_one_sandbox_in_one_batch(monkeypatch):
    first, second = FakeSandbox("a"), FakeSandbox("b")
    pool = _pool(first, second, monkeypatch=monkeypatch)
    assert _run(pool, ["0", "1", "2"]) == ["a0", "a1", "a2"]
    assert first.batches == [3] and second.batches == []
    assert pool.stats()["idle"] == 2


def test_what_an_unfit_sandbox_did_not_run_runs_on_another_in_order(monkeypatch):
    first, second = FakeSandbox("a", fit_for=2), FakeSandbox("b")
    pool = _pool(first, second, monkeypatch=monkeypatch)
    assert _run(pool, ["0", "1", "2", "3"]) == ["a0", "a1", "b2", "b3"]
    assert first.batches == [4] and second.batches == [2]
    assert first not in pool._sandboxes and pool._idle == [second]  # the unfit one is retired
