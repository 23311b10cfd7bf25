"""An environment package made by `asyncrl env init` installs, registers itself, and evaluates."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _asyncrl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "asyncrl.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_scaffolded_environment_installs_lists_and_evaluates(tmp_path):
    made = _asyncrl("env", "init", "echo-word", "--path", str(tmp_path))
    assert made.returncode == 0, made.stderr
    package = tmp_path / "echo-word"
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "-e",
        str(package),
    ]
    subprocess.run(pip, check=True, capture_output=True, timeout=600)
    try:
        listed = _asyncrl("env", "list")
        assert "echo-word" in listed.stdout and "asyncrl_env_echo_word:load_environment" in listed.stdout
        info = _asyncrl("env", "info", "echo-word")
        assert "num_examples=100" in info.stdout
        out = tmp_path / "eval"
        evaluated = _asyncrl("eval", "echo-word", "--model.path", "tiny", "--num-examples", "2",
                             "--rollouts-per-example", "1", "--sampling.max-tokens", "8",
                             "--output-dir", str(out))  # fmt: skip
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]
        assert len((out / "results.jsonl").read_text().splitlines()) == 2
        own_tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", str(package / "tests")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert own_tests.returncode == 0, own_tests.stdout[-2000:]
    finally:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", "asyncrl-env-echo-word"], timeout=600
        )


def test_init_refuses_bad_names_and_existing_dirs(tmp_path):
    bad = _asyncrl("env", "init", "Bad_Name", "--path", str(tmp_path))
    assert bad.returncode == 1 and "lower-case" in bad.stderr
    assert _asyncrl("env", "init", "twice", "--path", str(tmp_path)).returncode == 0
    again = _asyncrl("env", "init", "twice", "--path", str(tmp_path))
    assert again.returncode == 1 and "already exists" in again.stderr
