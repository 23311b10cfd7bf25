"""The built-in `arithmetic` task: generated word problems with a `\\boxed{}` answer, checked by
math-verify (so 0.5, 1/2 and \\frac{1}{2} all count)."""

from __future__ import annotations

import random
from typing import Any

from math_verify import parse, verify

from asyncrl.envs.environment import SingleTurnEnv
from asyncrl.envs.parsers import BoxedParser, Completion, Parser
from asyncrl.envs.rubric import Rubric

SYSTEM_PROMPT = "Solve the problem. Put the final answer in \\boxed{}."
NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana")
ITEMS = ("apples", "books", "coins", "marbles", "stamps", "tickets")


def word_problem(rng: random.Random, max_value: int) -> tuple[str, int]:
    """One problem and its integer answer."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, max_value), rng.randint(2, max_value)
    kind = rng.choice(("add", "sub", "mul", "div", "two-step"))
    if kind == "add":
        return f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b
    if kind == "sub":
        a, b = max(a, b), min(a, b)
        return f"{name} has {a} {item} and gives away {b}. How many {item} are left?", a - b
    if kind == "mul":
        return f"{name} buys {a} boxes with {b} {item} in each. How many {item} is that?", a * b
    if kind == "div":
        return f"{name} shares {a * b} {item} equally among {b} friends. How many does each friend get?", a
    c = rng.randint(2, max_value)
    return f"{name} has {a} bags of {b} {item} and loses {c} {item}. How many {item} are left?", a * b - c


def is_correct(prediction: str | None, answer: str) -> bool:
    """math-verify equivalence; timeouts off, because its alarm signals only work on the main thread."""
    if prediction is None:
        return False
    gold = parse(f"\\boxed{{{answer}}}", parsing_timeout=None)
    guess = parse(f"\\boxed{{{prediction}}}", parsing_timeout=None)
    return bool(verify(gold, guess, timeout_seconds=None))


def correct_answer(completion: Completion, answer: str, parser: Parser) -> float:
    return float(is_correct(parser.parse_answer(completion), answer))


def boxed_format(completion: Completion, parser: Parser) -> float:
    return parser.format_reward(completion)


def arithmetic_tasks(
    n: int, seed: int, max_value: int, system_prompt: str = SYSTEM_PROMPT
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    tasks = []
    for _ in range(n):
        question, answer = word_problem(rng, max_value)
        prompt = [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]
        tasks.append({"prompt": prompt, "answer": str(answer)})
    return tasks


def load_environment(num_examples: int = 1000, seed: int = 0, max_value: int = 20) -> SingleTurnEnv:
    """Arithmetic word problems. Args: num_examples, seed, max_value (largest operand: the difficulty)."""
    if max_value < 2:
        raise ValueError(f"max_value must be at least 2, got {max_value}")
    rubric = Rubric([correct_answer, boxed_format], weights=[1.0, 0.1], parser=BoxedParser())
    env = SingleTurnEnv(arithmetic_tasks(num_examples, seed, max_value), rubric)
    env.description = "Arithmetic word problems; reward = math-verify correctness of \\boxed{} (+0.1 format)."
    return env
