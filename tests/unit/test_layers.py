"""The package's import structure: the layer contracts (pyproject.toml, `lint-imports`) hold, no modules
import each other in a circle, and the lower layers never pull in the higher ones at run time."""

import subprocess
import sys
from pathlib import Path

import pytest

# A dev tool (import-linter's): `make test` has it; the GPU check's venv, which collects every test, does not.
grimp = pytest.importorskip("grimp")

ROOT = Path(__file__).resolve().parents[2]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_modules_import_each_other_in_a_circle_lazy_imports_included():
    # grimp reads every import statement of a module, those inside functions too.
    graph = grimp.build_graph("asyncrl", cache_dir=None)
    assert _cycles(graph) == []


def test_the_layer_contracts_hold():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_importing_the_inference_service_leaves_the_trainer_unimported():
    code = (
        "import sys\n"
        "import asyncrl.inference.serve, asyncrl.inference.torch.engine\n"
        "import asyncrl.toploc.verify, asyncrl.models\n"
        "above = ('asyncrl.trainer', 'asyncrl.builtin_models')\n"
        "above = sorted(m for m in sys.modules if m.startswith(above))\n"
        "assert not above, above\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
