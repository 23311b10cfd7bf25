"""`asyncrl sandbox exec FILE --json` as config overrides, and the exit status it reports."""

from __future__ import annotations

import pytest

from asyncrl.sandbox import Result
from asyncrl.sandbox.cli import exec_overrides, exit_status


def test_the_positional_file_and_the_json_flag_become_overrides():
    assert exec_overrides(["a.py", "--json", "--timeout", "2"]) == [
        "--file", "a.py", "--output", "json", "--timeout", "2",
    ]  # fmt: skip
    assert exec_overrides(["--file", "a.py"]) == ["--file", "a.py"]


@pytest.mark.parametrize(
    ("exit_code", "timed_out", "status"), [(0, False, 0), (3, False, 3), (-9, True, 124), (-24, False, 152)]
)
def test_exit_status_follows_the_shell(exit_code, timed_out, status):
    result = Result(
        stdout="", stderr="", exit_code=exit_code, timed_out=timed_out, oom_killed=False,
        output_truncated=False, duration_s=0.0,
    )  # fmt: skip
    assert exit_status(result) == status
