"""What an execution returns, and what a run of test cases returns: plain records, also the HTTP bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Result(BaseModel):
    """One execution: the program's output, how it ended, and how long it ran."""

    model_config = ConfigDict(frozen=True)

    stdout: str
    stderr: str
    exit_code: int
    """The exit status; -N when the program was killed by signal N (as `subprocess` reports it)."""
    timed_out: bool
    """Killed, with every process it started, at the wall-clock timeout."""
    oom_killed: bool
    """Ran out of its memory limit: an uncaught MemoryError, or killed by the kernel for memory."""
    output_truncated: bool
    """Wrote more than the output cap to stdout or stderr: stopped, and only the cap was kept."""
    duration_s: float


class IOCase(BaseModel):
    """A test case: the program reads `input` on stdin and must print `output`."""

    input: str = ""
    output: str


Verdict = Literal[
    "passed", "wrong_answer", "runtime_error", "timed_out", "memory_exceeded", "output_exceeded"
]


class CaseVerdict(BaseModel):
    verdict: Verdict
    passed: bool
    exit_code: int
    duration_s: float


class CasesReport(BaseModel):
    """A solution run against test cases: the fraction passed and each case's verdict, in order."""

    pass_fraction: float
    passed: int
    total: int
    cases: list[CaseVerdict]
