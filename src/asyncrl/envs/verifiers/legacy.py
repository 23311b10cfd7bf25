"""verifiers' 2025 environments (`verifiers.legacy`: `load_environment`, SingleTurnEnv, MultiTurnEnv, ToolEnv,
Rubric) as an asyncrl environment.

asyncrl's verifiers (0.4) no longer has that API, and the last release with it (0.3) cannot share asyncrl's
environment (it pins mcp < 2), so these environments run under an interpreter of their own
(`make verifiers-legacy`), in env-server workers (legacy_worker.py). A group is one `run_group` of the
environment there, scored by its rubric. Its model calls go to the rollout's inference server through
verifiers' token client (`openai_chat_completions_token`): from the second turn on, a prompt is the previous
turn's tokens plus the new messages' (`/v1/chat/completions/tokens`), so a multi-turn rollout is one training
sequence of the server's own tokens, its sampled mask on the model's turns only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

from asyncrl.envs.client import ChatTurn, ModelClient
from asyncrl.envs.environment import Environment, Rollout
from asyncrl.envs.rubric import Rubric
from asyncrl.envs.verifiers.config import VerifiersConfig
from asyncrl.envs.verifiers.servers import EnvServers, EpisodeError
from asyncrl.envs.verifiers.taskset import API_KEY_VAR
from asyncrl.errors import UserError

log = logging.getLogger("asyncrl.envs")
CHECKOUT_VENV = Path(__file__).resolve().parents[4] / ".venv-verifiers-legacy"
"""Where `make verifiers-legacy` installs verifiers 0.3, beside the checkout's .venv."""
WORKER = Path(__file__).with_name("legacy_worker.py")
EXIT_GRACE_S = 2.0
"""How long a lost connection waits for EnvServers to report its worker's exit before failing its groups."""


class LegacyEnvLoadError(UserError):
    """The 2025 environment could not be loaded, or there is no interpreter to load it; the message says
    which and what to do."""


def legacy_python(config: VerifiersConfig) -> str:
    """The interpreter that has verifiers' 2025 API, in the order VerifiersConfig.legacy_python documents."""
    python = config.legacy_python or os.environ.get("ASYNCRL_VERIFIERS_LEGACY_PYTHON")
    if python:
        return python
    if (CHECKOUT_VENV / "bin" / "python").exists():
        return str(CHECKOUT_VENV / "bin" / "python")
    raise LegacyEnvLoadError(
        'source = "verifiers-legacy" needs verifiers 0.3 in an environment of its own: run `make '
        "verifiers-legacy` in the asyncrl checkout (into .venv-verifiers-legacy), or set "
        "verifiers.legacy_python (or $ASYNCRL_VERIFIERS_LEGACY_PYTHON) to an interpreter with it and the "
        "environment's package"
    )


def load_tasks(python: str, config_path: Path, split: Literal["train", "eval"], timeout_s: float) -> list:
    """The rows of the environment's `split` dataset (eval falls back to train, as verifiers does)."""
    out = config_path.with_name("tasks.json")
    command = [python, "-P", str(WORKER), "tasks", str(config_path), str(out), split]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise LegacyEnvLoadError(
            f"the environment took over {timeout_s:g}s to load (raise verifiers.startup_timeout_s)"
        ) from None
    except OSError as e:
        raise LegacyEnvLoadError(f"could not run {python} to load the environment: {e}") from None
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise LegacyEnvLoadError(
            f"verifiers could not load the environment ({lines[-1] if lines else 'no output'}): check its "
            f"args, and that its package is installed into {python}'s environment (its id is the module's "
            "name). Its log ends:\n" + "\n".join(lines[-15:])
        )
    rows = json.loads(out.read_text())
    out.unlink()
    return rows


class LegacyClient:
    """A legacy worker's client: one Unix-socket connection, JSON lines, answers matched by id."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[list[dict[str, Any]]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is None:
                reader, self._writer = await asyncio.open_unix_connection(self.address, limit=1 << 28)
                self._reading = asyncio.create_task(self._read(reader))
            return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                answer = json.loads(line)
                future = self._pending.pop(answer["id"], None)
                if future is None or future.done():
                    continue
                if "error" in answer:
                    future.set_exception(RuntimeError(answer["error"]))
                else:
                    future.set_result(answer["outputs"])
        except (OSError, ValueError, KeyError) as e:
            log.warning("the legacy env worker's answers broke off (%s: %s)", type(e).__name__, e)
        # A worker that died is EnvServers' to report, with its exit code, once it sees the exit (moments
        # later); one that lives but closed the connection fails the groups it held here, and the next
        # request connects again.
        self._writer = None
        await asyncio.sleep(EXIT_GRACE_S)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(EpisodeError("the legacy env worker closed its connection"))

    async def _send(self, message: dict[str, Any]) -> None:
        writer = await self._connect()
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()

    async def run(self, **request: Any) -> list[dict[str, Any]]:
        """One group's rollout outputs; cancelling it cancels the group on the worker."""
        request_id = next(self._ids)
        future = self._pending[request_id] = asyncio.get_running_loop().create_future()
        try:
            with contextlib.suppress(OSError):
                await self._send({"id": request_id, **request})
            return await future
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                await self._send({"cancel": request_id})
            raise
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading


class LegacyEnvironment(Environment):
    """The tasks of a verifiers 2025 environment, run by legacy env-server workers; see the module doc."""

    def __init__(
        self,
        env_id: str,
        args: dict[str, Any],
        config: VerifiersConfig,
        log_dir: Path,
        split: Literal["train", "eval"],
    ) -> None:
        python = legacy_python(config)
        env_config = {"env_id": env_id, "env_args": args}
        scratch = Path(tempfile.mkdtemp(prefix="asyncrl-legacy-"))
        config_path = scratch / "env.json"
        config_path.write_text(json.dumps(env_config))
        try:
            tasks = load_tasks(python, config_path, split, config.startup_timeout_s)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not tasks:
            raise LegacyEnvLoadError(f"the verifiers environment {env_id!r} has no {split} dataset rows")
        super().__init__(tasks, Rubric([]))
        self.description = f"verifiers (2025 API) environment {env_id}"
        self.config = config
        self.servers = EnvServers(
            [python, "-P", str(WORKER), "serve"],
            env_config,
            LegacyClient,
            config.workers,
            log_dir,
            config.startup_timeout_s,
        )

    async def __aenter__(self) -> LegacyEnvironment:
        await self.servers.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.servers.close()

    async def rollout(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        return (await self.run_group(client, task, sampling, 1))[0]

    async def run(self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any]) -> Rollout:
        return await self.rollout(client, task, sampling)

    async def run_group(
        self, client: ModelClient, task: dict[str, Any], sampling: dict[str, Any], n: int
    ) -> list[Rollout]:
        """`n` rollouts of `task`, run and scored as one group by the environment, the whole group tried
        again on errors up to `verifiers.retries` times; rollouts with `error` set when every try failed."""
        policy_floor = client.serving_version  # see TasksetEnvironment.rollout
        request = {
            "inputs": [task] * n,
            "client": {
                "client_type": self.config.legacy_client,
                "api_base_url": client.base_url.rstrip("/") + "/v1",
                "api_key_var": API_KEY_VAR,
            },
            "model": client.model,
            "sampling_args": {key: sampling[key] for key in ("temperature", "top_p", "max_tokens")},
        }
        error = ""
        for _ in range(self.config.retries + 1):
            try:
                outputs = await self.servers.run(self.config.episode_timeout_s, **request)
            except (EpisodeError, RuntimeError) as e:  # RuntimeError: the environment raised
                error = str(e)
                continue
            rollouts = [output_rollout(task, output, policy_floor) for output in outputs]
            error = next((r.error for r in rollouts if r.error is not None), "")
            if not error:
                return rollouts
        log.warning("a group failed, tried %d times; it is left out: %s", self.config.retries + 1, error)
        return [Rollout(task=task, prompt=[], error=error) for _ in range(n)]


def output_rollout(task: dict[str, Any], output: dict[str, Any], policy_floor: int) -> Rollout:
    """A verifiers rollout output with its trajectory as a rollout: each trajectory step one turn, the
    reward and numeric metrics the environment's rubric gave; `error` set when it failed or has no
    tokens."""
    if output.get("error"):
        return Rollout(task=task, prompt=[], error=_error_message(output["error"]))
    turns: list[ChatTurn] = []
    for step in output.get("trajectory") or []:
        tokens = step.get("tokens")
        if not tokens:
            return Rollout(
                task=task,
                prompt=[],
                error="a model turn came back without token ids: the server must answer `return_token_ids` "
                "and `prompt_token_ids` (asyncrl's does, vLLM's too; multi-turn environments also need "
                '/v1/chat/completions/tokens, or verifiers.legacy_client = "openai_chat_completions")',
            )
        replies = [m for m in step.get("completion") or [] if m.get("role") == "assistant"]
        turns.append(
            ChatTurn(
                message=replies[-1] if replies else {"role": "assistant", "content": ""},
                prompt_token_ids=tokens["prompt_ids"],
                token_ids=tokens["completion_ids"],
                logprobs=tokens["completion_logprobs"],
                policy_version=policy_floor,
                finish_reason="length" if step.get("is_truncated") else "stop",
            )
        )
    if not turns:
        return Rollout(task=task, prompt=[], error="the rollout has no model turns (an empty trajectory)")
    if output.get("is_truncated"):  # verifiers cut the rollout short itself (prompt or token budget)
        turns[-1].finish_reason = "length"
    metrics = output.get("metrics") or {}
    return Rollout(
        task=task,
        prompt=output.get("prompt") or [],
        completion=output.get("completion") or [],
        turns=turns,
        reward=float(output.get("reward") or 0.0),
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
    )


def _error_message(error: Any) -> str:
    """A rollout's error as verifiers records it (`{"error_chain_str", "error_chain_repr", ...}`), in one
    line: the chain of exception types and the first line of the innermost message."""
    if not isinstance(error, dict):
        return str(error)
    chain = error.get("error_chain_repr") or error.get("message") or ""
    innermost = chain.split(" -> ")[-1].strip().splitlines()
    detail = innermost[0] if innermost else ""
    return f"{error.get('error_chain_str') or error.get('error', 'error')}: {detail}"[:500]
