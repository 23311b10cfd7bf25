"""Judging test cases: output comparison, each verdict, and the fraction passed."""

from __future__ import annotations

import pytest

from asyncrl.sandbox import IOCase, Result
from asyncrl.sandbox.tests_runner import cases_report, outputs_match, verdict_of


def _result(**fields) -> Result:
    base = dict(
        stdout="3\n", stderr="", exit_code=0, timed_out=False, oom_killed=False, output_truncated=False,
        duration_s=0.01,
    )  # fmt: skip
    return Result(**{**base, **fields})


@pytest.mark.parametrize(
    ("actual", "expected", "match"),
    [
        ("3\n", "3", True),
        ("1 2  \n3\n\n\n", "1 2\n3\n", True),
        ("3", "4", False),
        ("1\n\n2\n", "1\n2\n", False),
        (" 3\n", "3\n", False),
    ],
)
def test_outputs_match_up_to_trailing_whitespace(actual, expected, match):
    assert outputs_match(actual, expected) is match


@pytest.mark.parametrize(
    ("fields", "verdict"),
    [
        ({}, "passed"),
        ({"stdout": "4\n"}, "wrong_answer"),
        ({"exit_code": 1}, "runtime_error"),
        ({"timed_out": True, "exit_code": -9}, "timed_out"),
        ({"oom_killed": True, "exit_code": 1}, "memory_exceeded"),
        ({"output_truncated": True, "exit_code": -9}, "output_exceeded"),
    ],
)
def test_each_way_a_case_can_end_has_its_verdict(fields, verdict):
    judged = verdict_of(_result(**fields), "3\n")
    assert judged.verdict == verdict and judged.passed is (verdict == "passed")


def test_report_counts_the_fraction_passed():
    cases = [IOCase(input="1 2", output="3"), IOCase(input="2 2", output="4")]
    report = cases_report(cases, [_result(), _result(stdout="5")])
    assert (report.passed, report.total, report.pass_fraction) == (1, 2, 0.5)
