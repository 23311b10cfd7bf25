"""The `code` environment's problems and how a program is read out of an answer."""

from __future__ import annotations

import pytest

from asyncrl.envs.code_env import CodeParser, code_tasks
from asyncrl.envs.code_problems import PROBLEMS
from asyncrl.envs.registry import available, describe


@pytest.mark.parametrize(
    ("answer", "program"),
    [
        ("Sure:\n```python\nprint(1)\n```\n", "print(1)\n"),
        ("```py\nfirst()\n```\nbetter:\n```python3\nsecond()\n```", "second()\n"),
        ("```\nplain()\n```", "plain()\n"),
        ("print(1)", None),
        ("```python\n\n```", None),
        ("```python\nnever closed", None),
    ],
)
def test_the_program_is_the_last_code_block(answer, program):
    assert CodeParser().parse_answer([{"role": "assistant", "content": answer}]) == program


def test_the_problem_set_ships_with_tests():
    names = [p["name"] for p in PROBLEMS]
    assert len(names) >= 20 and len(set(names)) == len(names)
    assert all(len(p["tests"]) >= 3 and p["solution"].strip() for p in PROBLEMS)


def test_tasks_show_an_example_and_carry_their_tests():
    task = code_tasks()[0]
    assert "```python" in task["prompt"][0]["content"]
    assert "Example input:\n-5 5\n" in task["prompt"][1]["content"]
    assert task["tests"] == PROBLEMS[0]["tests"]


def test_code_is_a_built_in_environment():
    assert available()["code"] == "asyncrl.envs.code_env:load_environment"
    info = describe("code")
    assert info["dataset_size"] == len(PROBLEMS) and info["rubric"] == "tests_passed x 1"
