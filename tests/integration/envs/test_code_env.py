"""The `code` environment end to end: answers scored by running them against the tests in a sandbox,
through the HTTP service (as an orchestrator on another node would) and through a local pool."""

from __future__ import annotations

import asyncio

import pytest

from asyncrl.envs.code_problems import PROBLEMS
from asyncrl.envs.registry import load_environment
from asyncrl.sandbox.config import SandboxConfig
from tests.integration.sandbox.service import ServiceThread


def _answer(program: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": f"Here is my program:\n```python\n{program}```\n"}]


def _rewards(env, answers: list[str]) -> list[float]:
    task = env.dataset[0]  # sum-two: a + b for four cases, one of them negative

    async def score_all() -> list[float]:
        scores = await asyncio.gather(
            *(env.rubric.score(task["prompt"], _answer(a), None, {}, task) for a in answers)
        )
        return [s.reward for s in scores]

    return asyncio.run(score_all())


ANSWERS = [
    "a, b = map(int, input().split())\nprint(a + b)\n",  # correct
    "a, b = map(int, input().split())\nprint(abs(a + b))\n",  # wrong on the negative sum only
    "a, b = map(int, input().split())\nprint(a - b)\n",  # wrong everywhere
    "raise RuntimeError('crash')\n",  # crashes
    "while True:\n    pass\n",  # never ends
]


def test_code_env_scores_answers_through_the_service():
    with ServiceThread(SandboxConfig(pool_size=2)) as running:
        env = load_environment("code", sandbox_url=running.url, timeout_s=0.5)
        assert _rewards(env, ANSWERS) == [1.0, 0.75, 0.0, 0.0, 0.0]
        no_code = asyncio.run(
            env.rubric.score([], [{"role": "assistant", "content": "no idea"}], None, {}, {})
        )
        assert no_code.reward == 0.0


def test_code_env_scores_with_a_local_pool_and_every_reference_solution_passes():
    env = load_environment("code", pool_size=2)
    assert _rewards(env, ANSWERS[:2]) == [1.0, 0.75]

    async def references() -> list[float]:
        scores = await asyncio.gather(
            *(
                env.rubric.score(task["prompt"], _answer(problem["solution"]), None, {}, task)
                for problem, task in zip(PROBLEMS, env.dataset, strict=True)
            )
        )
        return [s.reward for s in scores]

    # A second event loop: the environment starts a fresh local pool for it.
    assert asyncio.run(references()) == pytest.approx([1.0] * len(PROBLEMS))
