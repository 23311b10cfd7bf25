"""`asyncrl broadcast serve` and `asyncrl broadcast fetch`."""

from __future__ import annotations

import json
import logging
import sys

from asyncrl.broadcast.config import BroadcastFetchConfig, BroadcastServeConfig
from asyncrl.config_loader import load_subcommand
from asyncrl.errors import UserError

USAGE = (
    "usage: asyncrl broadcast serve --weights-dir RUN/weights [--port P] [--token T] [--key VALUE ...]\n"
    "       asyncrl broadcast serve --upstream URL [URL ...] [--port P] [--key VALUE ...]\n"
    "       asyncrl broadcast fetch URL [URL ...] [--version N|latest] --out DIR [--base DIR] [--json]"
)


def main(argv: list[str]) -> int:
    commands = {
        "serve": (BroadcastServeConfig, lambda words: overrides(words, "upstream")),
        "fetch": (BroadcastFetchConfig, lambda words: overrides(words, "sources")),
    }
    loaded = load_subcommand("broadcast", USAGE, argv, commands)
    if isinstance(loaded, int):
        return loaded
    command, config = loaded
    if isinstance(config, BroadcastServeConfig) and config.role_problem():
        print(f"asyncrl broadcast serve: {config.role_problem()}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        if isinstance(config, BroadcastServeConfig):
            from asyncrl.broadcast.server import serve

            serve(config)
            return 0
        return fetch(config)
    except UserError as e:
        print(f"asyncrl broadcast {command}: {e}", file=sys.stderr)
        return 1


def overrides(argv: list[str], list_key: str) -> list[str]:
    """Command-line words as config overrides: URLs given positionally or after `--upstream` become one
    `--<list_key> JSON` list, and `--json` is `--output json`."""
    urls: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--json":
            out += ["--output", "json"]
        elif arg.replace("_", "-") == f"--{list_key}":
            while i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                value = argv[i + 1]
                urls += json.loads(value) if value.startswith("[") else [value]
                i += 1
        elif arg.startswith("-") and "=" not in arg:
            out += argv[i : i + 2]  # an option and its value
            i += 1
        elif arg.startswith("-"):
            out.append(arg)
        else:
            urls.append(arg)
        i += 1
    return [*out, f"--{list_key}", json.dumps(urls)] if urls else out


def fetch(config: BroadcastFetchConfig) -> int:
    from asyncrl.broadcast.client import fetch_version

    if not config.sources or config.out is None:
        print(
            f"asyncrl broadcast fetch: give one or more source URLs and --out DIR\n{USAGE}", file=sys.stderr
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    version = config.version if config.version == "latest" else int(config.version)
    report = fetch_version(config.sources, version, config.out, config.fetch, config.base, config.progress)
    print(json.dumps(report.as_dict()) if config.output == "json" else report.summary())
    return 0
