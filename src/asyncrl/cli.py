"""`asyncrl <command>`: one entry point; each command parses its own config section."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from asyncrl.config import (
    BaseConfig,
    ConfigError,
    EvalConfig,
    InferenceServerConfig,
    OrchestratorProcessConfig,
    RLConfig,
    SFTProcessConfig,
    TrainerProcessConfig,
    format_help,
    load_config,
)
from asyncrl.errors import UserError

DEFAULT_JOB = Path(__file__).resolve().parents[2] / "configs" / "reverse_text.toml"


def _inference(config: InferenceServerConfig) -> None:
    from asyncrl.inference.server import serve

    serve(config)


def _trainer(config: TrainerProcessConfig) -> None:
    from asyncrl.trainer.loop import train

    train(config)


def _sft(config: SFTProcessConfig) -> None:
    from asyncrl.trainer.sft import run_sft

    run_sft(config)


def _rl(config: RLConfig) -> None:
    from asyncrl.launcher.rl import run_rl

    run_rl(config)


def _orchestrator(config: OrchestratorProcessConfig) -> None:
    from asyncrl.orchestrator.loop import run_orchestrator

    run_orchestrator(config)


def _eval(config: EvalConfig) -> None:
    from asyncrl.evals.runner import run_eval

    run_eval(config)


def _env(argv: list[str]) -> int:
    """`asyncrl env list` / `asyncrl env info NAME` / `asyncrl env init NAME [--path DIR]`."""
    from asyncrl.envs.registry import available, describe
    from asyncrl.envs.scaffold import scaffold

    usage = "usage: asyncrl env list | asyncrl env info NAME | asyncrl env init NAME [--path DIR]"
    if "-h" in argv or "--help" in argv:
        print(usage)
        return 0
    if argv[:1] == ["list"]:
        for name, target in sorted(available().items()):
            print(f"{name:<24}{target}")
        return 0
    if argv[:1] == ["info"] and len(argv) == 2:
        for key, value in describe(argv[1]).items():
            print(f"{key:<14}{value}")
        return 0
    if argv[:1] == ["init"] and len(argv) in (2, 4) and (len(argv) == 2 or argv[2] == "--path"):
        root = scaffold(argv[1], Path(argv[3]) if len(argv) == 4 else Path("."))
        print(f"created {root}; install it with: pip install -e {root}")
        return 0
    print(usage, file=sys.stderr)
    return 2


def _sandbox(argv: list[str]) -> int:
    """`asyncrl sandbox serve` / `asyncrl sandbox exec FILE`."""
    from asyncrl.sandbox.cli import main as sandbox_main

    return sandbox_main(argv)


def _toploc(argv: list[str]) -> int:
    """`asyncrl toploc verify --model DIR --rollouts FILE`."""
    from asyncrl.toploc.cli import main as toploc_main

    return toploc_main(argv)


def _broadcast(argv: list[str]) -> int:
    """`asyncrl broadcast serve` / `asyncrl broadcast fetch URL ... --out DIR`."""
    from asyncrl.broadcast.cli import main as broadcast_main

    return broadcast_main(argv)


COMMANDS: dict[str, tuple[type[BaseConfig], Callable, str]] = {
    "rl": (RLConfig, _rl, "inference + orchestrator + trainer together on this machine"),
    "inference": (InferenceServerConfig, _inference, "the OpenAI-compatible inference server alone"),
    "orchestrator": (OrchestratorProcessConfig, _orchestrator, "rollouts into training batches, alone"),
    "trainer": (TrainerProcessConfig, _trainer, "the RL trainer alone (torchrun for several ranks)"),
    "sft": (SFTProcessConfig, _sft, "supervised fine-tuning on prompt/completion or chat JSONL"),
    "eval": (EvalConfig, _eval, "run an environment against a model: asyncrl eval ENV [options]"),
}


def usage() -> str:
    lines = ["usage: asyncrl <command> [-c FILE.toml ...] [--section.key VALUE ...]", "", "commands:"]
    lines += [f"  {name:<12} {doc}" for name, (_, _, doc) in COMMANDS.items()]
    lines += [f"  {'env':<12} environments: asyncrl env list | env info NAME | env init NAME [--path DIR]"]
    lines += [f"  {'sandbox':<12} run untrusted code: asyncrl sandbox serve | sandbox exec FILE [--url URL]"]
    lines += [f"  {'toploc':<12} inference proofs: asyncrl toploc verify --model DIR --rollouts FILE"]
    lines += [f"  {'broadcast':<12} shardcast: asyncrl broadcast serve | broadcast fetch URL --out DIR"]
    lines += ["", "`asyncrl <command> --help` lists every option with its doc and default."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "env":
        return _guarded(command, lambda: _env(rest))
    if command == "sandbox":
        return _guarded(command, lambda: _sandbox(rest))
    if command == "toploc":
        return _guarded(command, lambda: _toploc(rest))
    if command == "broadcast":
        return _guarded(command, lambda: _broadcast(rest))
    if command == "eval" and rest and not rest[0].startswith("-"):
        rest = ["--env", rest[0], *rest[1:]]
    if command not in COMMANDS:
        print(f"asyncrl: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    config_cls, run, _ = COMMANDS[command]
    if "-h" in rest or "--help" in rest:
        print(format_help(config_cls, command))
        return 0
    if command == "rl" and not any(a in ("-c", "--config") or a.startswith("--config=") for a in rest):
        rest = [*_default_job(), *rest]
    try:
        config = load_config(config_cls, rest)
    except ConfigError as e:
        print(f"asyncrl {command}: config error: {e}", file=sys.stderr)
        return 2
    return _guarded(command, lambda: run(config))


def _default_job() -> list[str]:
    """`asyncrl rl` without a config file runs the default job, configs/reverse_text.toml of this checkout."""
    if DEFAULT_JOB.is_file():
        return ["-c", str(DEFAULT_JOB)]
    print(f"asyncrl rl: {DEFAULT_JOB} not found (not a source checkout?); using the built-in defaults",
          file=sys.stderr)  # fmt: skip
    return []


def _guarded(command: str, work: Callable[[], int | None]) -> int:
    """Run a command; errors that tell the user what to do are one line, not a traceback."""
    try:
        return work() or 0
    except UserError as e:
        print(f"asyncrl {command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
