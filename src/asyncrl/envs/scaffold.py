"""`asyncrl env init NAME`: a new environment package that registers itself with asyncrl."""

from __future__ import annotations

import re
from pathlib import Path

from asyncrl.errors import UserError

PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "asyncrl-env-{name}"
version = "0.1.0"
description = "The {name} environment for asyncrl."
requires-python = ">=3.11"
dependencies = ["asyncrl"]

[project.entry-points."asyncrl.environments"]
{name} = "{module}:load_environment"

[tool.setuptools]
packages = ["{module}"]
"""

MODULE = '''"""The {name} environment: replace the tasks and the reward with your own."""

from __future__ import annotations

import random

from asyncrl.envs.environment import SingleTurnEnv
from asyncrl.envs.parsers import Parser
from asyncrl.envs.rubric import Rubric

WORDS = ("apple", "river", "stone", "cloud", "maple", "ember")


def exact_match(completion, answer, parser) -> float:
    """1.0 when the parsed answer is exactly the expected one."""
    return float(parser.parse_answer(completion) == answer)


def load_environment(num_examples: int = 100, seed: int = 0) -> SingleTurnEnv:
    """Repeat a word back. Args: num_examples (tasks generated), seed."""
    rng = random.Random(seed)
    tasks = []
    for _ in range(num_examples):
        word = rng.choice(WORDS)
        prompt = [{{"role": "user", "content": f"Repeat this word exactly: {{word}}"}}]
        tasks.append({{"prompt": prompt, "answer": word}})
    env = SingleTurnEnv(tasks, Rubric([exact_match], parser=Parser()))
    env.description = "Repeat a word back; reward = exact match."
    return env
'''

TEST = """import asyncio

from {module} import load_environment


def test_exact_repetition_scores_one():
    env = load_environment(num_examples=3)
    task = env.dataset[0]
    completion = [{{"role": "assistant", "content": task["answer"]}}]
    score = asyncio.run(env.rubric.score(task["prompt"], completion, task["answer"]))
    assert score.reward == 1.0
"""

README = """# asyncrl-env-{name}

An asyncrl environment. Install it next to asyncrl and it shows up in `asyncrl env list`:

    pip install -e .
    asyncrl env info {name}
    asyncrl eval {name} --model.path tiny --num-examples 10
"""


class ScaffoldError(UserError):
    """The name is not usable or the target directory already exists."""


def scaffold(name: str, parent: Path) -> Path:
    """Write the package `parent/name/`; returns its directory."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise ScaffoldError(f"environment names are lower-case letters, digits and dashes, not {name!r}")
    root = Path(parent) / name
    if Path(parent).exists() and not Path(parent).is_dir():
        raise ScaffoldError(f"--path {parent} is a file; give the directory to create {name}/ in")
    if root.exists():
        raise ScaffoldError(f"{root} already exists; pick another name or --path")
    module = "asyncrl_env_" + name.replace("-", "_")
    files = {
        "pyproject.toml": PYPROJECT,
        f"{module}/__init__.py": MODULE,
        f"tests/test_{module}.py": TEST,
        "README.md": README,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(name=name, module=module))
    return root
