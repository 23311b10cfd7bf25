"""verifiers v1 packages the tests write and import: a taskset whose tasks misbehave on demand, one with a
tool, and a harness that never calls the model. Env-server workers find them through PYTHONPATH. And the
tiny model's dir with a tokenizer for tool calls."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenizers import AddedToken

from asyncrl.models import load_tokenizer, tiny_model_dir

MODES = r"""
import asyncio
import os

import verifiers.v1 as vf


class ModeData(vf.TaskData):
    mode: str


class ModeTask(vf.Task[ModeData]):
    @vf.reward(weight=1.0)
    async def reply_length(self, trace: vf.Trace) -> float:
        if self.data.mode == "raise":
            if os.environ.get("ASYNCRL_TEST_TRIES"):  # counts the tries
                with open(os.environ["ASYNCRL_TEST_TRIES"], "a") as f:
                    f.write("try\n")
            raise RuntimeError("this reward always raises")
        if self.data.mode == "hang":
            await asyncio.sleep(3600)
        if self.data.mode == "crash":
            os._exit(3)
        return len(trace.last_reply) / 64

    @vf.metric
    async def replied(self, trace: vf.Trace) -> float:
        return float(bool(trace.last_reply))


class ModeConfig(vf.TasksetConfig):
    modes: list[str] = ["ok"]


class ModeTaskset(vf.Taskset[ModeTask, ModeConfig]):
    def load(self):
        for i, mode in enumerate(self.config.modes):
            yield ModeTask(ModeData(prompt=f"Say something, {i}.", mode=mode), self.config.task)


__all__ = ["ModeTaskset"]
"""

SILENT = """
import verifiers.v1 as vf
from verifiers.v1.runtimes import ProgramResult


class SilentHarnessConfig(vf.HarnessConfig):
    id: str = "asyncrl-test-silent"


class SilentHarness(vf.Harness[SilentHarnessConfig]):
    APPENDS_SYSTEM_PROMPT = True
    EXECUTES_CODE = False
    NEEDS_CONTAINER = False

    async def launch(self, ctx, trace, runtime, endpoint, secret, mcp_urls, data):
        return ProgramResult(exit_code=0, stdout="", stderr="")


__all__ = ["SilentHarness"]
"""


CALC = """
import verifiers.v1 as vf

from asyncrl_test_calc.toolset import CalcToolset


class CalcData(vf.TaskData):
    a: int
    b: int


class CalcTaskConfig(vf.TaskConfig):
    tools: vf.ToolsetConfig = vf.ToolsetConfig()


class CalcTask(vf.Task[CalcData, vf.State, CalcTaskConfig]):
    @classmethod
    def toolsets(cls, config):
        return [CalcToolset(config.tools)]

    @vf.reward(weight=1.0)
    async def correct(self, trace: vf.Trace) -> float:
        return float(trace.last_reply == str(self.data.a + self.data.b))

    @vf.reward(weight=0.1)
    async def brief(self, trace: vf.Trace) -> float:  # something to learn for a model that never calls
        return 1.0 - min(len(trace.last_reply) / 32, 1.0)

    @vf.metric
    async def tool_messages(self, trace: vf.Trace) -> float:
        return float(len(trace.tool_messages))


class CalcConfig(vf.TasksetConfig):
    task: CalcTaskConfig = CalcTaskConfig()


class CalcTaskset(vf.Taskset[CalcTask, CalcConfig]):
    def load(self):
        yield CalcTask(CalcData(prompt="What is 2 + 3? Use the tool.", a=2, b=3), self.config.task)


__all__ = ["CalcTaskset"]
"""

CALC_TOOLSET = """
import verifiers.v1 as vf


class CalcToolset(vf.Toolset[vf.ToolsetConfig]):
    TOOL_PREFIX = "calc"

    @vf.tool
    def add(self, a: int, b: int) -> int:
        \"\"\"Add two integers.\"\"\"
        return a + b


if __name__ == "__main__":
    CalcToolset.run()
"""

PACKAGES = {
    "asyncrl_test_modes/__init__.py": MODES,
    "asyncrl_test_silent/__init__.py": SILENT,
    "asyncrl_test_calc/__init__.py": CALC,
    "asyncrl_test_calc/toolset.py": CALC_TOOLSET,
}


@pytest.fixture(scope="session")
def vf_packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tasksets `asyncrl-test-modes` and `asyncrl-test-calc` (a tool) and the harness
    `asyncrl-test-silent`, importable here and in every process started from here."""
    root = tmp_path_factory.mktemp("vf_packages")
    for path, source in PACKAGES.items():
        (root / path).parent.mkdir(exist_ok=True)
        (root / path).write_text(source)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), before]))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="session")
def tool_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's dir, its tokenizer with `<tool_call>` and `</tool_call>` as single tokens (which
    renderers' qwen3 tool parser needs)."""
    tokenizer = load_tokenizer("tiny")
    tokenizer.add_tokens([AddedToken(t, normalized=False) for t in ("<tool_call>", "</tool_call>")])
    path = tmp_path_factory.mktemp("tool_tokenizer") / "model"
    shutil.copytree(tiny_model_dir(), path)
    tokenizer.save_pretrained(path)
    return path
