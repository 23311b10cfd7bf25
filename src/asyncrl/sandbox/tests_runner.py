"""Judging a solution against input/output cases: the verdict of each case and the fraction passed."""

from __future__ import annotations

from collections.abc import Sequence

from asyncrl.sandbox.result import CasesReport, CaseVerdict, IOCase, Result, Verdict


def outputs_match(actual: str, expected: str) -> bool:
    """Equal up to trailing whitespace on each line and trailing blank lines."""
    return _normalized(actual) == _normalized(expected)


def _normalized(text: str) -> list[str]:
    return [line.rstrip() for line in text.rstrip().splitlines()]


def verdict_of(result: Result, expected: str) -> CaseVerdict:
    verdict: Verdict
    if result.timed_out:
        verdict = "timed_out"
    elif result.output_truncated:
        verdict = "output_exceeded"
    elif result.oom_killed:
        verdict = "memory_exceeded"
    elif result.exit_code != 0:
        verdict = "runtime_error"
    elif not outputs_match(result.stdout, expected):
        verdict = "wrong_answer"
    else:
        verdict = "passed"
    return CaseVerdict(
        verdict=verdict, passed=verdict == "passed", exit_code=result.exit_code, duration_s=result.duration_s
    )


def cases_report(cases: Sequence[IOCase], results: Sequence[Result]) -> CasesReport:
    verdicts = [verdict_of(result, case.output) for case, result in zip(cases, results, strict=True)]
    passed = sum(v.passed for v in verdicts)
    return CasesReport(
        pass_fraction=passed / len(verdicts) if verdicts else 0.0,
        passed=passed,
        total=len(verdicts),
        cases=verdicts,
    )
