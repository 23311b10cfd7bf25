"""verifiers v1 packages the tests write and import: a taskset whose tasks misbehave on demand, and a
harness that never calls the model. Env-server workers find them through PYTHONPATH."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def vf_packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`asyncrl_test_modes` (taskset id `asyncrl-test-modes`) and `asyncrl_test_silent` (harness id
    `asyncrl-test-silent`), importable here and in every process started from here."""
    root = tmp_path_factory.mktemp("vf_packages")
    for name, source in (("asyncrl_test_modes", MODES), ("asyncrl_test_silent", SILENT)):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(source)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), before]))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before
