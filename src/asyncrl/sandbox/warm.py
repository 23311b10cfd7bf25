"""One warm sandbox, seen from the host: bwrap with the worker interpreter inside, reused across
executions (the worker forks a fresh child for each)."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from typing import Any

from asyncrl.sandbox.config import SandboxConfig
from asyncrl.sandbox.errors import SandboxCrashedError, SandboxUnavailableError
from asyncrl.sandbox.isolation import HOST_ENV, sandbox_uid, seccomp_fd, worker_command

STARTUP_TIMEOUT_S = 60.0
# Beyond the execution's own timeout: the worker's fork, clean-up and answer. Only a wedged worker uses it.
ANSWER_GRACE_S = 15.0


class WarmSandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.uid = sandbox_uid()
        self.reusable = False
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> WarmSandbox:
        fd = seccomp_fd()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *worker_command(self.config, self.uid, fd),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=HOST_ENV,
                pass_fds=(fd,),
                start_new_session=True,
            )
        finally:
            os.close(fd)
        try:
            ready = await asyncio.wait_for(self._receive(), STARTUP_TIMEOUT_S)
        except (asyncio.IncompleteReadError, TimeoutError, ValueError):
            ready = None
        except BaseException:
            self.kill()
            raise
        if ready != {"ready": True}:
            self.kill()
            raise SandboxUnavailableError(f"a sandbox did not start: {await self._stderr_tail()}")
        self.reusable = True
        return self

    async def run(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The worker's answers to execution requests, which it runs in order. They are all sent at once, so
        the worker finds the next one waiting rather than a round trip away. Answers stop after one that
        leaves the sandbox unfit for more (the worker then runs nothing else). Sets `reusable`."""
        assert self._process is not None and self._process.stdin is not None
        self.reusable = False
        answers = []
        try:
            # Not drained: the worker reads the later requests only after answering the earlier ones.
            self._process.stdin.write(b"".join(map(frame, requests)))
            for request in requests:
                # asyncio.timeout rather than wait_for, which would make a task of every read.
                async with asyncio.timeout(request["timeout"] + ANSWER_GRACE_S):
                    answers.append(await self._receive())
                if not answers[-1].pop("reusable"):
                    return answers
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as e:
            self.kill()
            raise SandboxCrashedError(
                f"a sandbox died or stopped answering during an execution ({type(e).__name__}); it is "
                f"being replaced. {await self._stderr_tail()}"
            ) from None
        except BaseException:
            # Cancelled mid-execution: the worker's next answer would be out of step.
            self.kill()
            raise
        self.reusable = True
        return answers

    async def _receive(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        header = await self._process.stdout.readexactly(4)
        return json.loads(await self._process.stdout.readexactly(struct.unpack(">I", header)[0]))

    async def _stderr_tail(self) -> str:
        if self._process is None or self._process.stderr is None:
            return ""
        try:
            data = await asyncio.wait_for(self._process.stderr.read(1 << 16), 2.0)
        except TimeoutError:
            return ""
        return data.decode(errors="replace").strip()[-2000:]

    @property
    def alive(self) -> bool:
        return self.reusable and self._process is not None and self._process.returncode is None

    def kill(self) -> None:
        """Kill the sandbox and everything in it (its pid namespace dies with bwrap)."""
        self.reusable = False
        if self._process is not None and self._process.returncode is None:
            self._process.kill()

    async def close(self) -> None:
        self.kill()
        if self._process is not None:
            await self._process.wait()


def frame(message: dict[str, Any]) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">I", len(data)) + data
