"""`asyncrl <command>`: one entry point and one command table; every command is read the same way (its
config from `-c FILE` and `--section.key value`, `--help` from the config it really runs with)."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncrl.broadcast.config import BroadcastFetchConfig, BroadcastServeConfig
from asyncrl.config import BaseConfig, ConfigError, format_help, load_config
from asyncrl.envs.config import EnvInfoConfig, EnvInitConfig, EnvListConfig
from asyncrl.errors import UserError
from asyncrl.evals.config import EvalConfig
from asyncrl.inference.config import InferenceServerConfig
from asyncrl.launcher.config import RLConfig
from asyncrl.monitor.config import MonitorCommandConfig
from asyncrl.orchestrator.config import OrchestratorProcessConfig
from asyncrl.sandbox.config import SandboxExecConfig, SandboxServeConfig
from asyncrl.toploc.config import VerifyCommandConfig
from asyncrl.trainer.config import ExportConfig, SFTProcessConfig, TrainerProcessConfig
from asyncrl.viewer.config import ViewConfig

DEFAULT_JOB = Path(__file__).resolve().parents[2] / "configs" / "reverse_text.toml"
OPTIONS = "[-c FILE.toml ...] [--section.key VALUE ...]"


def _first_word_as(key: str) -> Callable[[list[str]], list[str]]:
    """`CMD WORD ...` read as `CMD --key WORD ...`."""
    return lambda argv: [f"--{key}", argv[0], *argv[1:]] if argv and not argv[0].startswith("-") else argv


def _words(target: str) -> Callable[[list[str]], list[str]]:
    """A command's own argv shaping, `module:function`, imported only when the command runs."""
    return lambda argv: _load(target)(argv)


def _model_flag(argv: list[str]) -> list[str]:
    """`--model DIR` is short for `--model.path DIR`, which `--model.dtype` can then join."""
    argv = ["--model.path" if arg == "--model" else arg for arg in argv]
    return [f"--model.path={arg[8:]}" if arg.startswith("--model=") else arg for arg in argv]


def _missing_verify_inputs(config: VerifyCommandConfig, argv: list[str]) -> str | None:
    if config.rollouts is None:
        return "give the rollouts file with --rollouts FILE"
    if not any(arg.startswith(("--model.path", "-c", "--config")) for arg in argv):
        return "give the claimed model with --model DIR"
    return None


@dataclass(frozen=True)
class Command:
    config: type[BaseConfig]
    """What the command accepts; its defaults are the command's defaults, and `--help` prints them."""
    run: str
    """`module:function` taking the config and returning the exit code (anything else: 0); imported only
    when the command runs, so `asyncrl --help` and the light commands never import torch."""
    summary: str
    usage: str
    """The command's usage line(s), after `usage: `."""
    words: Callable[[list[str]], list[str]] = list
    """Turns the command's positional words and short flags into `--key value` overrides."""
    check: Callable[[Any, list[str]], str | None] | None = None
    """Why the config lacks something the command needs (printed with the usage, exit 2); None when not."""
    resolves_models: bool | Callable[[Any], bool] = True
    """Whether a built-in model name is built and replaced by its dir before the command runs (a function
    of the config when it depends on it)."""


def _needs(field: str, what: str) -> Callable[[Any, list[str]], str | None]:
    return lambda config, _: None if getattr(config, field) else f"give {what}"


COMMANDS: dict[str, Command] = {
    "rl": Command(
        RLConfig,
        "asyncrl.launcher.rl:run_rl",
        "inference + orchestrator + trainer together on this machine",
        f"asyncrl rl {OPTIONS}",
        resolves_models=False,  # the launcher resolves once, for its three children
    ),
    "inference": Command(
        InferenceServerConfig,
        "asyncrl.inference.serve:serve",
        "the OpenAI-compatible inference server alone",
        f"asyncrl inference {OPTIONS}",
    ),
    "orchestrator": Command(
        OrchestratorProcessConfig,
        "asyncrl.orchestrator.loop:run_orchestrator",
        "rollouts into training batches, alone",
        f"asyncrl orchestrator {OPTIONS}",
    ),
    "trainer": Command(
        TrainerProcessConfig,
        "asyncrl.trainer.loop:train",
        "the RL trainer alone (torchrun for several ranks)",
        f"asyncrl trainer {OPTIONS}",
    ),
    "sft": Command(
        SFTProcessConfig,
        "asyncrl.trainer.sft:run_sft",
        "supervised fine-tuning on prompt/completion or chat JSONL",
        f"asyncrl sft {OPTIONS}",
    ),
    "export": Command(
        ExportConfig,
        "asyncrl.trainer.export:export_merged",
        "merge a LoRA adapter dir into its base: a whole HF model dir",
        "asyncrl export ADAPTER_DIR --out DIR [--base MODEL]",
        _first_word_as("adapter"),
        lambda config, _: None if config.adapter and config.out else "give the ADAPTER_DIR and --out DIR",
    ),
    "eval": Command(
        EvalConfig,
        "asyncrl.evals.runner:run_eval",
        "run an environment against a model: asyncrl eval ENV [options]",
        f"asyncrl eval ENV {OPTIONS}",
        _first_word_as("env"),
        # With --base-url the model is a served name; without, a built-in one is resolved, for the server
        # eval starts and for the tokenizer of verifiers' renderers.
        resolves_models=lambda config: config.base_url is None,
    ),
    "view": Command(
        ViewConfig,
        "asyncrl.viewer.app:serve_viewer",
        "a live web page on a run dir: curves and rollouts",
        "asyncrl view RUN_DIR [--port P] [--host H --token T]",
        _first_word_as("run-dir"),
        _needs("run_dir", "the RUN_DIR of an `asyncrl rl` run"),
        resolves_models=False,
    ),
    "monitor": Command(
        MonitorCommandConfig,
        "asyncrl.monitor.service:follow_run",
        "log a run started process by process to W&B / TensorBoard",
        "asyncrl monitor RUN_DIR --monitor.wandb true [--monitor.key VALUE ...]",
        _first_word_as("run-dir"),
        _needs("run_dir", "the RUN_DIR of the run to follow"),
        resolves_models=False,
    ),
    "env list": Command(
        EnvListConfig,
        "asyncrl.envs.commands:list_environments",
        "environments installed (built-in and plugins)",
        "asyncrl env list",
    ),
    "env info": Command(
        EnvInfoConfig,
        "asyncrl.envs.commands:show_environment",
        "one environment's loader and arguments",
        "asyncrl env info NAME",
        _first_word_as("name"),
        _needs("name", "the environment NAME"),
    ),
    "env init": Command(
        EnvInitConfig,
        "asyncrl.envs.commands:init_environment",
        "scaffold a new environment package",
        "asyncrl env init NAME [--path DIR]",
        _first_word_as("name"),
        _needs("name", "the new environment's NAME"),
    ),
    "sandbox serve": Command(
        SandboxServeConfig,
        "asyncrl.sandbox.cli:serve_sandboxes",
        "the sandbox service (a warm pool behind HTTP)",
        "asyncrl sandbox serve [--host H] [--port P] [--token T] [--sandbox.key VALUE ...]",
    ),
    "sandbox exec": Command(
        SandboxExecConfig,
        "asyncrl.sandbox.cli:run_file",
        "run a Python file in a sandbox (locally, or through --url)",
        "asyncrl sandbox exec FILE [--timeout S] [--json] [--url URL] [--stdin FILE]",
        _words("asyncrl.sandbox.cli:exec_overrides"),
        _needs("file", "the Python FILE to run"),
    ),
    "toploc verify": Command(
        VerifyCommandConfig,
        "asyncrl.toploc.cli:verify_file",
        "verify the TOPLOC proofs of a rollouts file against a model",
        "asyncrl toploc verify --model DIR --rollouts FILE [--model.dtype D] [--toploc.key VALUE ...]",
        _model_flag,
        _missing_verify_inputs,
    ),
    "broadcast serve": Command(
        BroadcastServeConfig,
        "asyncrl.broadcast.cli:serve_node",
        "a shardcast origin (--weights-dir) or relay (--upstream)",
        "asyncrl broadcast serve --weights-dir RUN/weights [--port P] [--token T] [--key VALUE ...]\n"
        "       asyncrl broadcast serve --upstream URL [URL ...] [--port P] [--key VALUE ...]",
        _words("asyncrl.broadcast.cli:upstream_overrides"),
        lambda config, _: config.role_problem(),
    ),
    "broadcast fetch": Command(
        BroadcastFetchConfig,
        "asyncrl.broadcast.cli:fetch",
        "fetch one weights version into an HF dir",
        "asyncrl broadcast fetch URL [URL ...] [--version N|latest] --out DIR [--base DIR] [--json]",
        _words("asyncrl.broadcast.cli:source_overrides"),
        lambda config, _: (
            None
            if config.sources and config.out is not None
            else "give one or more source URLs and --out DIR"
        ),
    ),
}
GROUPS = sorted({name.split()[0] for name in COMMANDS if " " in name})


def _load(target: str) -> Callable[..., Any]:
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def usage() -> str:
    lines = [f"usage: asyncrl <command> {OPTIONS}", "", "commands:"]
    lines += [f"  {name:<16} {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "`asyncrl <command> --help` lists every option with its doc and the default it runs with."]
    return "\n".join(lines)


def group_usage(group: str) -> str:
    """The usage lines of every `asyncrl GROUP ...` command."""
    usages = [c.usage for name, c in COMMANDS.items() if name.split()[0] == group]
    return "usage: " + "\n       ".join(usages)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    group = argv[0]
    name, rest = (" ".join(argv[:2]), argv[2:]) if group in GROUPS else (group, argv[1:])
    if name not in COMMANDS:
        if group in GROUPS:
            asked = argv[1:2] in (["-h"], ["--help"])
            print(group_usage(group), file=sys.stdout if asked else sys.stderr)
            return 0 if asked else 2
        print(f"asyncrl: unknown command {group!r}\n\n{usage()}", file=sys.stderr)
        return 2
    command = COMMANDS[name]
    if name == "rl" and not _config_files(rest):
        rest = [*_default_job(), *rest]
    if "-h" in rest or "--help" in rest:
        return _help(name, command, group, [part for file in _config_files(rest) for part in ("-c", file)])
    argv_given = command.words(rest)
    try:
        config = load_config(command.config, argv_given)
    except ConfigError as e:
        print(f"asyncrl {name}: config error: {e}", file=sys.stderr)
        return 2
    problem = command.check(config, argv_given) if command.check else None
    if problem:
        print(f"asyncrl {name}: {problem}\n{group_usage(group)}", file=sys.stderr)
        return 2

    def work() -> object:
        resolves = command.resolves_models
        if not (resolves(config) if callable(resolves) else resolves):
            return _load(command.run)(config)
        from asyncrl.builtin_models import resolve_builtin_models  # builds a missing model (torch, SFT)

        return _load(command.run)(resolve_builtin_models(config))

    return _guarded(group, work)


def _config_files(argv: list[str]) -> list[str]:
    """The files `-c FILE`, `--config FILE` and `--config=FILE` name, in order."""
    files = []
    for i, arg in enumerate(argv):
        if argv[i - 1 : i] in (["-c"], ["--config"]):
            files.append(arg)
        elif arg.startswith("--config="):
            files.append(arg.removeprefix("--config="))
    return files


def _help(name: str, command: Command, group: str, files: list[str]) -> int:
    """`--help`: every option with the value the command runs with, its config files (the default job's,
    for rl) applied."""
    try:
        values = load_config(command.config, files)
    except ConfigError as e:
        print(f"asyncrl {name}: config error: {e}", file=sys.stderr)
        return 2
    print(format_help(command.config, group_usage(group).removeprefix("usage: "), values))
    return 0


def _default_job() -> list[str]:
    """`asyncrl rl` without a config file runs the default job, configs/reverse_text.toml of this checkout."""
    if DEFAULT_JOB.is_file():
        return ["-c", str(DEFAULT_JOB)]
    print(f"asyncrl rl: {DEFAULT_JOB} not found (not a source checkout?); using the built-in defaults",
          file=sys.stderr)  # fmt: skip
    return []


def _guarded(group: str, work: Callable[[], object]) -> int:
    """Run a command; errors that tell the user what to do are one line, not a traceback."""
    try:
        status = work()
    except UserError as e:
        # stderr may be a log file on the disk that just filled up: the exit code still says what happened.
        with contextlib.suppress(OSError):
            print(f"asyncrl {group}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return status if isinstance(status, int) else 0  # a command may return what it made (eval: its dir)


if __name__ == "__main__":
    sys.exit(main())
