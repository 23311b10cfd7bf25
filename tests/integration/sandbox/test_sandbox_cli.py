"""`asyncrl sandbox exec` exits with the program's code (124 on timeout), locally or through a service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asyncrl.cli import main


@pytest.fixture()
def program(tmp_path: Path):
    def write(source: str) -> str:
        path = tmp_path / "program.py"
        path.write_text(source)
        return str(path)

    return write


def test_exec_prints_the_output_and_exits_with_the_programs_code(program, capsys):
    path = program("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n")
    assert main(["sandbox", "exec", path]) == 3
    captured = capsys.readouterr()
    assert captured.out == "out\n" and captured.err == "err\n"


def test_exec_exits_124_on_timeout(program, capsys):
    assert main(["sandbox", "exec", program("import time\ntime.sleep(30)\n"), "--timeout", "0.5"]) == 124
    assert "timed out" in capsys.readouterr().err


def test_exec_json_prints_the_result_record(program, capsys, tmp_path):
    stdin = tmp_path / "input.txt"
    stdin.write_text("21\n")
    path = program("print(int(input()) * 2)\nraise SystemExit(5)\n")
    assert main(["sandbox", "exec", path, "--json", "--stdin", str(stdin)]) == 5
    record = json.loads(capsys.readouterr().out)
    assert record["stdout"] == "42\n" and record["exit_code"] == 5 and record["timed_out"] is False
    assert set(record) == {
        "stdout", "stderr", "exit_code", "timed_out", "oom_killed", "output_truncated", "duration_s",
    }  # fmt: skip


def test_exec_through_a_running_service(program, capsys, service):
    path = program("import os\nprint(os.getuid() >= 1000000)\n")
    assert main(["sandbox", "exec", path, "--url", service.url]) == 0
    assert capsys.readouterr().out == "True\n"


def test_exec_explains_an_unreachable_service(program, capsys):
    assert main(["sandbox", "exec", program("print(1)"), "--url", "http://127.0.0.1:9"]) == 1
    assert "is `asyncrl sandbox serve` running there?" in capsys.readouterr().err


def test_serve_refuses_a_public_address_without_a_token(capsys, monkeypatch):
    monkeypatch.delenv("ASYNCRL_SANDBOX_TOKEN", raising=False)
    assert main(["sandbox", "serve", "--host", "0.0.0.0"]) == 1
    assert "set a bearer token" in capsys.readouterr().err
    assert main(["sandbox", "launch"]) == 2


@pytest.mark.slow
def test_the_installed_command_exits_with_the_programs_code(program):
    path = program("import sys\nprint('from a real process')\nsys.exit(7)\n")
    done = subprocess.run([sys.executable, "-m", "asyncrl.cli", "sandbox", "exec", path], capture_output=True)
    assert done.returncode == 7 and done.stdout == b"from a real process\n"
