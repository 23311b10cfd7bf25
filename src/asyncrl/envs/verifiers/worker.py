"""One env-server worker: `python -m asyncrl.envs.verifiers.worker CONFIG.json ADDRESS_FILE` serves a
verifiers env over ZMQ on a free loopback port, writes that address to ADDRESS_FILE once it listens, and
exits when its parent closes its stdin (so a killed orchestrator leaves no worker behind)."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading


class _Announce:
    """What serve_env reports its bound address to: a file the parent waits for, written whole."""

    def __init__(self, path: str) -> None:
        self.path = path

    def put(self, address: str) -> None:
        with open(self.path + ".tmp", "w") as f:
            f.write(address)
        os.replace(self.path + ".tmp", self.path)


def _exit_with_parent() -> None:
    sys.stdin.read()
    os._exit(0)


def main() -> None:
    from verifiers.v1.serve import serve_env

    # Into the worker's log (its stderr): verifiers logs each rollout's start, end and failure.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with open(sys.argv[1]) as f:
        config = json.load(f)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    serve_env(
        max_workers=1,
        address="tcp://127.0.0.1:0",
        address_queue=_Announce(sys.argv[2]),
        config_data=config["env"],
        max_concurrent=config.get("max_concurrent"),
    )


if __name__ == "__main__":
    main()
