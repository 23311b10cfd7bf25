"""The built-in `calculator` task: arithmetic the model may solve by calling a calculator tool."""

from __future__ import annotations

import ast
import operator
import random

from asyncrl.envs.arithmetic import correct_answer
from asyncrl.envs.parsers import BoxedParser
from asyncrl.envs.rubric import Rubric
from asyncrl.envs.tool_env import ToolEnv

SYSTEM_PROMPT = (
    "Compute the value. You may call the calculate tool as often as you like. "
    "Put the final answer in \\boxed{}."
)
OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST) -> float:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError("only numbers, + - * / and parentheses are allowed")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: numbers with + - * / and parentheses, e.g. "(12 + 3) * 4"
    """
    value = _evaluate(ast.parse(expression, mode="eval").body)
    return str(int(value)) if float(value).is_integer() else str(value)


def load_environment(
    num_examples: int = 500, seed: int = 0, max_value: int = 999, max_turns: int = 4
) -> ToolEnv:
    """Multi-step arithmetic with a calculator tool. Args: num_examples, seed, max_value, max_turns."""
    rng = random.Random(seed)
    tasks = []
    for _ in range(num_examples):
        a, b, c = (rng.randint(2, max_value) for _ in range(3))
        expression = f"{a} * {b} - {c}"
        prompt = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"What is {expression}?"},
        ]
        tasks.append({"prompt": prompt, "answer": calculate(expression)})
    env = ToolEnv(
        tasks, Rubric([correct_answer], parser=BoxedParser()), tools=[calculate], max_turns=max_turns
    )
    env.description = "Arithmetic with a calculator tool (multi-turn); reward = math-verify correctness."
    return env
