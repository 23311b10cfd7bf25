"""The local sandbox API: a pool of warm sandboxes, provisioned ahead of demand and replaced in the
background when one dies, with a bounded queue in front (over it, SandboxBusyError)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from asyncrl.sandbox.api import SandboxAPI
from asyncrl.sandbox.config import SandboxConfig
from asyncrl.sandbox.errors import SandboxBusyError, SandboxUnavailableError
from asyncrl.sandbox.execution import worker_request
from asyncrl.sandbox.isolation import check_available
from asyncrl.sandbox.protocol import ExecuteRequest, RunTestsRequest
from asyncrl.sandbox.result import CasesReport, Result
from asyncrl.sandbox.tests_runner import cases_report
from asyncrl.sandbox.warm import WarmSandbox

log = logging.getLogger("asyncrl.sandbox")


class SandboxPool(SandboxAPI):
    """`async with SandboxPool(config) as pool: result = await pool.execute("print(1)")`."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._idle: list[WarmSandbox] = []
        # First come, first served: a freed sandbox goes to the longest waiter, never to a newcomer.
        self._waiters: deque[asyncio.Future[WarmSandbox]] = deque()
        self._sandboxes: set[WarmSandbox] = set()
        self._refills: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> SandboxPool:
        """Check that sandboxes can be made here, then start all of them."""
        await asyncio.to_thread(check_available, self.config)
        started = await asyncio.gather(
            *(WarmSandbox(self.config).start() for _ in range(self.config.pool_size)), return_exceptions=True
        )
        for sandbox in started:
            if isinstance(sandbox, WarmSandbox):
                self._sandboxes.add(sandbox)
                self._idle.append(sandbox)
        failures = [s for s in started if isinstance(s, BaseException)]
        if failures:
            await self.close()
            raise failures[0]
        return self

    async def __aenter__(self) -> SandboxPool:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------------------------------------------
    # The API: SandboxAPI's methods come here.

    async def submit(self, request: ExecuteRequest) -> Result:
        return (await self._run([worker_request(self.config, request)]))[0]

    async def submit_tests(self, request: RunTestsRequest) -> CasesReport:
        """Every case on one leased sandbox, so a test run takes one queue slot."""
        bounds = {"timeout": request.timeout, "limits": request.limits}
        runs = [
            worker_request(self.config, ExecuteRequest(code=request.code, stdin=case.input, **bounds))
            for case in request.cases
        ]
        return cases_report(request.cases, await self._run(runs))

    def stats(self) -> dict[str, int]:
        idle = len(self._idle)
        return {
            "pool_size": self.config.pool_size,
            "idle": idle,
            "busy": len(self._sandboxes) - idle,
            "queued": len(self._waiters),
        }

    # ---------------------------------------------------------------------------------------------------
    # Leasing sandboxes.

    async def _run(self, requests: list[dict[str, Any]]) -> list[Result]:
        """Run the requests in order on one leased sandbox (the rest on another, if it must be replaced)."""
        lease: WarmSandbox | None = await self._acquire(queue_limit=True)
        results: list[Result] = []
        try:
            while True:
                results += [Result(**answer) for answer in await lease.run(requests[len(results) :])]
                if len(results) == len(requests):
                    return results
                self._release(lease)
                lease = None
                lease = await self._acquire(queue_limit=False)
        finally:
            if lease is not None:
                self._release(lease)

    async def _acquire(self, queue_limit: bool) -> WarmSandbox:
        if self._closed:
            raise SandboxUnavailableError("the sandbox pool is closed; start a new one")
        while self._idle:
            sandbox = self._idle.pop()  # the most recently used: its pages are the warmest
            if sandbox.alive:
                return sandbox
            self._release(sandbox)  # died while idle: replaced in the background
        queued = self.stats()["queued"]
        if queue_limit and queued >= self.config.max_queue:
            raise SandboxBusyError(
                f"all {self.config.pool_size} sandboxes are busy and {queued} executions are queued "
                "(sandbox.max_queue); retry later, or raise sandbox.pool_size / sandbox.max_queue"
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif not waiter.cancelled():
                self._release(waiter.result())  # handed over just as the caller gave up
            raise

    def _release(self, sandbox: WarmSandbox) -> None:
        if not sandbox.alive or self._closed:
            self._retire(sandbox)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled caller's waiter may linger until its task runs
                waiter.set_result(sandbox)
                return
        self._idle.append(sandbox)

    def _retire(self, sandbox: WarmSandbox) -> None:
        sandbox.kill()
        if sandbox not in self._sandboxes:
            return  # retired already: one replacement is enough
        self._sandboxes.discard(sandbox)
        if not self._closed:
            task = asyncio.create_task(self._replace(sandbox))
            self._refills.add(task)
            task.add_done_callback(self._refills.discard)

    async def _replace(self, retired: WarmSandbox) -> None:
        await retired.close()
        delay = 0.1
        while not self._closed:
            try:
                sandbox = await WarmSandbox(self.config).start()
            except SandboxUnavailableError as e:
                log.warning("could not start a replacement sandbox (retrying in %.1fs): %s", delay, e)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 10.0)
                continue
            if self._closed:
                await sandbox.close()
                return
            self._sandboxes.add(sandbox)
            self._release(sandbox)
            return

    # ---------------------------------------------------------------------------------------------------
    # Shutting down.

    async def close(self) -> None:
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(SandboxUnavailableError("the sandbox pool was closed"))
        self._waiters.clear()
        for task in self._refills:
            task.cancel()
        await asyncio.gather(*self._refills, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self._sandboxes))
        self._sandboxes.clear()
