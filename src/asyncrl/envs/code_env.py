"""The built-in `code` task: write a Python program for a small problem; the reward is the fraction of the
problem's stdin/stdout tests it passes, run in the sandbox (a service given by URL, or a local warm pool)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from asyncrl.envs.code_problems import PROBLEMS
from asyncrl.envs.environment import SingleTurnEnv
from asyncrl.envs.parsers import Completion, Parser, last_assistant_text
from asyncrl.envs.rubric import Rubric
from asyncrl.sandbox import SandboxAPI, SandboxClient, SandboxPool
from asyncrl.sandbox.config import SandboxConfig

SYSTEM_PROMPT = (
    "Write a complete Python 3 program that reads its input from standard input and prints the answer to "
    "standard output. Reply with the program in one ```python code block."
)
CODE_BLOCK = re.compile(r"```(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL)


class CodeParser(Parser):
    """The program is the last fenced code block of the answer."""

    def parse_answer(self, completion: Completion) -> str | None:
        blocks = CODE_BLOCK.findall(last_assistant_text(completion))
        return blocks[-1] if blocks and blocks[-1].strip() else None


class SandboxJudge:
    """Scores programs against a task's tests in a sandbox: the service at `url`, or else a local pool
    started on first use in each event loop (its pipes belong to the loop that made them)."""

    def __init__(self, url: str | None, token: str | None, timeout_s: float, pool_size: int) -> None:
        self.url, self.token = url, token
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self._opened: asyncio.Task[SandboxAPI] | None = None
        self._keeper: asyncio.Task[None] | None = None  # the event loop holds tasks only weakly

    async def tests_passed(self, completion: Completion, task: dict[str, Any], parser: Parser) -> float:
        code = parser.parse_answer(completion)
        if code is None:
            return 0.0
        sandbox = await self._sandbox()
        report = await sandbox.run_tests(code, task["tests"], timeout=self.timeout_s)
        return report.pass_fraction

    def _sandbox(self) -> asyncio.Task[SandboxAPI]:
        loop = asyncio.get_running_loop()
        if self._opened is None or self._opened.get_loop() is not loop:
            self._opened = loop.create_task(self._open())
        return self._opened

    async def _open(self) -> SandboxAPI:
        if self.url:
            sandbox: SandboxAPI = SandboxClient(self.url, self.token)
        else:
            config = SandboxConfig(pool_size=self.pool_size, timeout_s=self.timeout_s)
            sandbox = await SandboxPool(config).start()
        self._keeper = asyncio.create_task(_close_at_loop_shutdown(sandbox))
        return sandbox


async def _close_at_loop_shutdown(sandbox: SandboxAPI) -> None:
    """Hold `sandbox` until this task is cancelled, as asyncio.run does to every task left at its end."""
    try:
        await asyncio.Future()
    finally:
        await sandbox.close()


def code_tasks(system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    tasks = []
    for problem in PROBLEMS:
        # The second case: the first of most problems is the trivial edge case.
        example = problem["tests"][1]
        question = (
            f"{problem['statement']}\n\nExample input:\n{example['input']}\n"
            f"Example output:\n{example['output']}"
        )
        prompt = [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]
        tasks.append({"prompt": prompt, "name": problem["name"], "tests": problem["tests"]})
    return tasks


def load_environment(
    sandbox_url: str | None = None,
    sandbox_token: str | None = None,
    timeout_s: float = 5.0,
    pool_size: int = 4,
) -> SingleTurnEnv:
    """Small Python programming problems judged by stdin/stdout tests. Args: sandbox_url (a running
    `asyncrl sandbox serve`; default: a local pool of pool_size warm sandboxes), sandbox_token,
    timeout_s (per test)."""
    if timeout_s <= 0 or pool_size < 1:
        raise ValueError(f"need timeout_s > 0 and pool_size >= 1, got {timeout_s} and {pool_size}")
    judge = SandboxJudge(sandbox_url, sandbox_token, timeout_s, pool_size)
    env = SingleTurnEnv(code_tasks(), Rubric([judge.tests_passed], parser=CodeParser()))
    env.description = (
        "Python problems with stdin/stdout tests; reward = fraction of tests passed in a sandbox."
    )
    return env
