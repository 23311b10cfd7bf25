"""`asyncrl sandbox serve` and `asyncrl sandbox exec FILE`."""

from __future__ import annotations

import asyncio
import sys

from asyncrl.sandbox.client import SandboxClient
from asyncrl.sandbox.config import SandboxExecConfig, SandboxServeConfig
from asyncrl.sandbox.pool import SandboxPool
from asyncrl.sandbox.result import Result

TIMEOUT_EXIT = 124


def exec_overrides(argv: list[str]) -> list[str]:
    """`exec FILE ... --json` as config overrides: `--file FILE ... --output json`."""
    argv = ["--file", *argv] if argv and not argv[0].startswith("-") else list(argv)
    return [part for arg in argv for part in (["--output", "json"] if arg == "--json" else [arg])]


def serve_sandboxes(config: SandboxServeConfig) -> None:
    from asyncrl.sandbox.server import serve

    serve(config)


def run_file(config: SandboxExecConfig) -> int:
    assert config.file is not None  # the command's check
    try:
        code = config.file.read_text()
        stdin = None
        if config.stdin is not None:
            stdin = sys.stdin.read() if str(config.stdin) == "-" else config.stdin.read_text()
    except OSError as e:
        print(f"asyncrl sandbox exec: {e}", file=sys.stderr)
        return 2
    result = asyncio.run(_execute(config, code, stdin))
    if config.output == "json":
        print(result.model_dump_json())
    else:
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        for note in _notes(result):
            print(f"asyncrl sandbox exec: {note}", file=sys.stderr)
    return exit_status(result)


async def _execute(config: SandboxExecConfig, code: str, stdin: str | None) -> Result:
    sandbox = SandboxClient(config.url, config.token) if config.url else SandboxPool(config.sandbox)
    async with sandbox:
        return await sandbox.execute(code, stdin=stdin, timeout=config.timeout)


def _notes(result: Result) -> list[str]:
    notes = []
    if result.timed_out:
        notes.append(f"timed out after {result.duration_s:.1f}s; the program and its children were killed")
    if result.output_truncated:
        notes.append("the program wrote more than the output cap, so it was stopped and its output cut")
    if result.oom_killed:
        notes.append("the program ran out of memory (sandbox.limits.memory_mb)")
    return notes


def exit_status(result: Result) -> int:
    """The program's exit code; 124 on timeout, 128+N when killed by signal N (as a shell reports it)."""
    if result.timed_out:
        return TIMEOUT_EXIT
    return 128 - result.exit_code if result.exit_code < 0 else result.exit_code
