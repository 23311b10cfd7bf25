import subprocess
import sys


def test_the_cli_starts_without_importing_torch():
    # Commands that never touch a model (sandbox, broadcast, env, --help) must not pay torch's import.
    code = (
        "import sys, asyncrl.cli as cli\n"
        "assert cli.main(['--help']) == 0\n"
        "heavy = sorted({'torch', 'transformers', 'vllm'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_user_error_is_one_line_without_a_traceback(tmp_path):
    # A rollouts file that does not exist: RolloutsFileError, one of the UserErrors.
    missing = tmp_path / "no-such-model"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncrl.cli",
            "toploc",
            "verify",
            "--model",
            str(missing),
            "--rollouts",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("asyncrl toploc: ") and len(result.stderr.strip().splitlines()) == 1


def test_env_help_is_usage_not_an_environment_name(capsys):
    from asyncrl.cli import main

    assert main(["env", "info", "--help"]) == 0
    assert "usage: asyncrl env list" in capsys.readouterr().out


def test_env_init_into_a_file_is_a_one_line_error(tmp_path, capsys):
    from asyncrl.cli import main

    (tmp_path / "afile").touch()
    assert main(["env", "init", "myenv", "--path", str(tmp_path / "afile")]) == 1
    assert "is a file" in capsys.readouterr().err
