"""A worker for verifiers' 2025 environments (`verifiers.legacy`, verifiers 0.3), run by the interpreter
that has them (`make verifiers-legacy`), which is not asyncrl's: this file imports nothing of asyncrl and is
run by path, `python -P legacy_worker.py ...` (-P: its own folder stays off sys.path).

    legacy_worker.py tasks CONFIG.json OUT.json train|eval
        loads the environment and writes the rows of that dataset as a JSON list, then exits.
    legacy_worker.py serve CONFIG.json ADDRESS_FILE
        listens on a Unix socket in ADDRESS_FILE's folder, writes the socket's path to ADDRESS_FILE once it
        listens, and answers JSON lines: {"id", "inputs", "client", "model", "sampling_args"} runs a group
        (`Environment.run_group`, scored by the environment's rubric) and answers {"id", "outputs"} (the
        rollout outputs with their trajectories) or {"id", "error"}; {"cancel": id} cancels one. It exits
        when its parent closes its stdin.

CONFIG.json: {"env_id": ..., "env_args": {...}}.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import sys
import threading
from typing import Any


def _load(config_path: str) -> Any:
    import verifiers as vf

    with open(config_path) as f:
        config = json.load(f)
    return vf.load_environment(config["env_id"], **config["env_args"])


def write_tasks(config_path: str, out_path: str, split: str) -> None:
    """The rows of the environment's `split` dataset ("train" or "eval") as a JSON list in `out_path`."""
    from verifiers.legacy.utils.save_utils import make_serializable

    env = _load(config_path)
    try:
        dataset = env.get_dataset() if split == "train" else env.get_eval_dataset()
        rows = dataset.to_list()
    except ValueError:  # the environment has no such split
        rows = []
    with open(out_path + ".tmp", "w") as f:
        json.dump(rows, f, default=make_serializable)
    os.replace(out_path + ".tmp", out_path)


def _without_responses(output: dict[str, Any]) -> dict[str, Any]:
    """`output` without each turn's raw response (its tokens are in the turn's `tokens`), the turn marked
    `is_truncated` when the model ran out of tokens there."""
    for step in output.get("trajectory") or []:
        message = (step.pop("response", None) or {}).get("message") or {}
        step["is_truncated"] = bool(step.get("is_truncated") or message.get("is_truncated"))
    return output


class _Worker:
    def __init__(self, env: Any) -> None:
        self.env = env
        self.running: dict[Any, asyncio.Task[None]] = {}
        self.clients: dict[str, Any] = {}
        """One client (and connection pool) per client config, as verifiers' own env workers keep."""

    def client(self, config: dict[str, Any]) -> Any:
        from verifiers.legacy.clients import resolve_client
        from verifiers.legacy.types import ClientConfig

        key = json.dumps(config, sort_keys=True)
        if key not in self.clients:
            self.clients[key] = resolve_client(ClientConfig.model_validate(config))
        return self.clients[key]

    def sampling_args(self, request: dict[str, Any]) -> dict[str, Any]:
        """The environment's own sampling args (stop strings, chat template kwargs, ...) under the
        request's, `extra_body` merged: what verifiers' `generate` does and `run_group` alone does not."""
        merged = copy.deepcopy(getattr(self.env, "sampling_args", None) or {})
        extra_body = {**merged.get("extra_body", {}), **request.get("extra_body", {})}
        merged.update(request)
        if extra_body:
            merged["extra_body"] = extra_body
        return merged

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            if "cancel" in message:
                task = self.running.pop(message["cancel"], None)
                if task is not None:
                    task.cancel()
                continue
            self.running[message["id"]] = asyncio.create_task(self.run(message, writer))

    async def run(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        from verifiers.legacy.utils.save_utils import make_serializable

        try:
            outputs = await self.env.run_group(
                group_inputs=message["inputs"],
                client=self.client(message["client"]),
                model=message["model"],
                sampling_args=self.sampling_args(message["sampling_args"]),
                state_columns=["trajectory"],
            )
            outputs = json.loads(json.dumps(outputs, default=make_serializable))
            answer = {"id": message["id"], "outputs": [_without_responses(o) for o in outputs]}
        except asyncio.CancelledError:
            return
        except Exception as e:  # the environment's own failure: the parent counts the episode as an error
            logging.exception("a group failed")
            answer = {"id": message["id"], "error": f"{type(e).__name__}: {e}"}
        finally:
            self.running.pop(message["id"], None)
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()


async def serve(config_path: str, address_file: str) -> None:
    worker = _Worker(_load(config_path))
    socket_path = os.path.join(os.path.dirname(os.path.abspath(address_file)), f"worker_{os.getpid()}.sock")
    server = await asyncio.start_unix_server(worker.serve_connection, socket_path, limit=1 << 28)
    with open(address_file + ".tmp", "w") as f:
        f.write(socket_path)
    os.replace(address_file + ".tmp", address_file)
    async with server:
        await server.serve_forever()


def _exit_with_parent() -> None:
    sys.stdin.read()
    os._exit(0)


def main() -> None:
    # Into the worker's log (its stderr): verifiers logs each rollout's failures there.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per model call would fill the log
    command, config_path, out = sys.argv[1:4]
    if command == "tasks":
        write_tasks(config_path, out, sys.argv[4])
        return
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    asyncio.run(serve(config_path, out))


if __name__ == "__main__":
    main()
