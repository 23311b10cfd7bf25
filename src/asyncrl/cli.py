"""`asyncrl <command>`: one entry point; each command parses its own config section."""

from __future__ import annotations

import sys
from collections.abc import Callable

from asyncrl.config import (
    BaseConfig,
    ConfigError,
    InferenceServerConfig,
    SFTProcessConfig,
    TrainerProcessConfig,
    format_help,
    load_config,
)
from asyncrl.models import ModelLoadError
from asyncrl.run_dir import BatchFormatError, WaitTimeout
from asyncrl.trainer.checkpoint import CheckpointError
from asyncrl.trainer.losses import LossImportError
from asyncrl.trainer.sft_data import SFTDataError

# Errors whose message tells the user what to do: printed as one line, no traceback.
USER_ERRORS = (ModelLoadError, CheckpointError, LossImportError, BatchFormatError, WaitTimeout, SFTDataError)


def _inference(config: InferenceServerConfig) -> None:
    from asyncrl.inference.server import serve

    serve(config)


def _trainer(config: TrainerProcessConfig) -> None:
    from asyncrl.trainer.loop import train

    train(config)


def _sft(config: SFTProcessConfig) -> None:
    from asyncrl.trainer.sft import run_sft

    run_sft(config)


COMMANDS: dict[str, tuple[type[BaseConfig], Callable, str]] = {
    "inference": (InferenceServerConfig, _inference, "the OpenAI-compatible inference server alone"),
    "trainer": (TrainerProcessConfig, _trainer, "the RL trainer alone (torchrun for several ranks)"),
    "sft": (SFTProcessConfig, _sft, "supervised fine-tuning on prompt/completion or chat JSONL"),
}


def usage() -> str:
    lines = ["usage: asyncrl <command> [-c FILE.toml ...] [--section.key VALUE ...]", "", "commands:"]
    lines += [f"  {name:<12} {doc}" for name, (_, _, doc) in COMMANDS.items()]
    lines += ["", "`asyncrl <command> --help` lists every option with its doc and default."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"asyncrl: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    config_cls, run, _ = COMMANDS[command]
    if "-h" in rest or "--help" in rest:
        print(format_help(config_cls, command))
        return 0
    try:
        config = load_config(config_cls, rest)
    except ConfigError as e:
        print(f"asyncrl {command}: config error: {e}", file=sys.stderr)
        return 2
    try:
        run(config)
    except USER_ERRORS as e:
        print(f"asyncrl {command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
