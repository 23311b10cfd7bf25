"""A pool of env-server worker processes (worker.py for v1 tasksets, legacy_worker.py for the 2025 API) and
the episodes sent to them.

Each episode goes to the least busy live worker. A worker that exits is started again; the episodes it
was running fail at once with EpisodeError instead of hanging, as does an episode past its timeout (it is
cancelled on the worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from asyncrl.errors import UserError

log = logging.getLogger("asyncrl.envs")
RESTART_DELAY_S = 1.0
"""Pause before a worker that exited is started again (a worker that cannot start would spin)."""


class EnvServerStartError(UserError):
    """An env-server worker did not start; the message carries the tail of its log."""


class EpisodeError(Exception):
    """An episode failed outside the environment's own error handling: its worker died, or it timed out."""


@dataclass
class _Worker:
    index: int
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    client: Any = None
    """The client of this worker's address: `connect(address)`."""
    died: asyncio.Future[int] | None = None
    """Resolves to the exit code when the process started last exits."""
    running: int = 0


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class EnvServers:
    """`workers` processes `command CONFIG.json ADDRESS_FILE` serving the env `config` describes: each
    writes the address it serves at to ADDRESS_FILE, and exits when its stdin closes. `connect(address)`
    makes a worker's client, whose `run(**request)` runs one episode and `close()` lets go."""

    def __init__(
        self,
        command: list[str],
        config: dict[str, Any],
        connect: Callable[[str], Any],
        workers: int,
        log_dir: Path,
        startup_timeout_s: float,
    ) -> None:
        self.startup_timeout_s = startup_timeout_s
        self._command = command
        self._connect = connect
        self._config_data = config
        self._dir: Path | None = None
        """The private dir of the workers' config and addresses, while they run."""
        self._log_dir = log_dir
        self._workers = [_Worker(i, log_dir / f"env_worker_{i}.log") for i in range(workers)]
        self._watchers: list[asyncio.Task[None]] = []
        self._closing = False

    async def start(self) -> None:
        """Start every worker; if one cannot start, stop the others and raise its EnvServerStartError."""
        self._dir = Path(tempfile.mkdtemp(prefix="asyncrl-env-"))
        (self._dir / "env.json").write_text(json.dumps(self._config_data))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        started = await asyncio.gather(*(self._start(w) for w in self._workers), return_exceptions=True)
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed:
            await self.close()
            raise failed[0]
        self._watchers = [asyncio.create_task(self._watch(w)) for w in self._workers]

    async def _start(self, worker: _Worker) -> None:
        assert self._dir is not None, "start() first"
        address_file = self._dir / f"address_{worker.index}"
        address_file.unlink(missing_ok=True)
        with open(worker.log_path, "ab") as out:
            worker.process = await asyncio.create_subprocess_exec(
                *self._command, str(self._dir / "env.json"), str(address_file),
                stdin=asyncio.subprocess.PIPE, stdout=out, stderr=out,
            )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout_s
        while not address_file.exists():
            if worker.process.returncode is not None or time.monotonic() > deadline:
                await self._kill(worker)
                raise EnvServerStartError(
                    f"env-server worker {worker.index} did not start (log {worker.log_path}):\n"
                    + _log_tail(worker.log_path)
                )
            await asyncio.sleep(0.05)
        worker.client = self._connect(address_file.read_text())
        worker.died = asyncio.get_running_loop().create_future()
        log.info("env-server worker %d serves at %s", worker.index, address_file.read_text())

    async def _watch(self, worker: _Worker) -> None:
        """Start the worker again whenever it exits, failing the episodes it was running."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if self._closing:
                return
            assert worker.died is not None
            worker.died.set_result(code)
            log.warning(
                "env-server worker %d exited with code %s; its %d episodes count as errors, and it is "
                "started again. Its log ends:\n%s",
                worker.index, code, worker.running, _log_tail(worker.log_path),
            )  # fmt: skip
            await self._close_client(worker)
            while True:
                await asyncio.sleep(RESTART_DELAY_S)
                try:
                    await self._start(worker)
                    break
                except EnvServerStartError as e:
                    log.error("%s; trying again", e)

    async def _live(self) -> list[_Worker]:
        """The workers serving now, waiting (as long as one may take to start) while all restart."""
        deadline = time.monotonic() + RESTART_DELAY_S + self.startup_timeout_s
        while True:
            live = [
                w for w in self._workers if w.client is not None and w.died is not None and not w.died.done()
            ]
            if live:
                return live
            if time.monotonic() > deadline:
                raise EpisodeError("no env-server worker came back (see the logs of env_worker_*)")
            await asyncio.sleep(0.1)

    async def run(self, timeout_s: float, **request: Any) -> Any:
        """One episode (the client's `run` keyword arguments) on the least busy live worker: its
        `WireEpisode`. Raises EpisodeError when the worker dies under it or it takes over `timeout_s`."""
        worker = min(await self._live(), key=lambda w: w.running)
        worker.running += 1
        episode = asyncio.create_task(worker.client.run(**request))
        died = worker.died
        assert died is not None
        try:
            done, _ = await asyncio.wait(
                {episode, died}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if episode in done:
                return episode.result()
            if died in done:
                raise EpisodeError(f"env-server worker {worker.index} exited with code {died.result()}")
            raise EpisodeError(f"the episode took over {timeout_s:g}s (verifiers.episode_timeout_s)")
        finally:
            worker.running -= 1
            if not episode.done():
                episode.cancel()  # the client then asks the worker to cancel the episode
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await episode

    async def close(self) -> None:
        self._closing = True
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await asyncio.gather(*(self._kill(w) for w in self._workers))
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def _close_client(self, worker: _Worker) -> None:
        if worker.client is not None:
            client, worker.client = worker.client, None
            with contextlib.suppress(Exception):
                await client.close()

    async def _kill(self, worker: _Worker) -> None:
        await self._close_client(worker)
        process = worker.process
        if process is None or process.returncode is not None:
            return
        stdin: IO[bytes] | Any = process.stdin
        if stdin is not None:
            stdin.close()  # the worker exits when its stdin closes
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
