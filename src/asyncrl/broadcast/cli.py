"""`asyncrl broadcast serve` and `asyncrl broadcast fetch`."""

from __future__ import annotations

import json
import logging

from asyncrl.broadcast.config import BroadcastFetchConfig, BroadcastServeConfig


def serve_node(config: BroadcastServeConfig) -> None:
    from asyncrl.broadcast.server import serve

    serve(config)


def upstream_overrides(argv: list[str]) -> list[str]:
    """`serve` words as overrides: the relay's upstream URLs."""
    return overrides(argv, "upstream")


def source_overrides(argv: list[str]) -> list[str]:
    """`fetch` words as overrides: the sources to fetch from."""
    return overrides(argv, "sources")


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

    assert config.sources and config.out is not None  # the command's check
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    version = config.version if config.version == "latest" else int(config.version)
    report = fetch_version(config.sources, version, config.out, config.fetch, config.base, config.progress)
    print(json.dumps(report.as_dict()) if config.output == "json" else report.summary())
    return 0
