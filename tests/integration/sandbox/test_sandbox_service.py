"""The HTTP service: routes, back-pressure, bearer tokens, and bad requests refused without harm."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from asyncrl.sandbox import (
    SandboxAuthError,
    SandboxBusyError,
    SandboxClient,
    SandboxRequestError,
    TokenRequiredError,
)
from asyncrl.sandbox.config import SandboxConfig, SandboxServeConfig
from asyncrl.sandbox.server import serve
from tests.integration.sandbox.service import ServiceThread


def test_run_tests_reports_the_fraction_passed_and_each_verdict(service):
    adder = "a, b = map(int, input().split())\nprint(a + b if a < 100 else a * b)\n"
    cases = [
        {"input": "1 2\n", "output": "3\n"},
        {"input": "200 3\n", "output": "203"},
        {"input": "oops\n", "output": "0"},
    ]
    report = service.call("run_tests", adder, cases)
    assert report.passed == 1 and report.total == 3 and report.pass_fraction == pytest.approx(1 / 3)
    assert [c.verdict for c in report.cases] == ["passed", "wrong_answer", "runtime_error"]
    slow = service.call("run_tests", "import time\ntime.sleep(5)\n", cases[:1], timeout=0.3)
    assert slow.cases[0].verdict == "timed_out"


def test_command_form_runs_tests_over_supplied_files(service):
    files = {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "test_calc.py": "import unittest, calc\n\nclass T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(calc.add(2, 2), 4)\n"
        "    def test_fails(self):\n        self.assertEqual(calc.add(2, 2), 5)\n",
    }
    result = service.call("run_command", ["python3", "-m", "unittest", "-q"], files=files)
    assert result.exit_code == 1 and "FAILED (failures=1)" in result.stderr
    missing = service.call("run_command", ["no-such-program"])
    assert missing.exit_code == 127 and "No such file" in missing.stderr


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"files": {"../escape.py": "x"}}, "must be relative"),
        ({"files": {"/etc/passwd": "x"}}, "must be relative"),
        ({"timeout": 1e6}, "timeout must be in"),
        ({"limits": {"memory_mb": 1 << 20}}, "limits may only be tightened"),
        ({"limits": {"no_such_limit": 1}}, "limits.no_such_limit"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(service, kwargs, message):
    with pytest.raises(SandboxRequestError, match=message):
        service.call("execute", "print(1)", **kwargs)


def test_a_test_run_without_cases_is_refused(service):
    with pytest.raises(SandboxRequestError, match="cases: List should have at least 1 item"):
        service.call("run_tests", "print(1)", [])
    with pytest.raises(SandboxRequestError, match="cases.0.output: Field required"):
        service.call("run_tests", "print(1)", [{"input": "1"}])


def test_malformed_bodies_get_400(service):
    answer = httpx.post(f"{service.url}/v1/execute", json={"code": "print(1)", "command": ["true"]})
    assert answer.status_code == 400 and "either code" in answer.json()["error"]["message"]
    assert httpx.post(f"{service.url}/v1/execute", json={"stdin": "x"}).status_code == 400
    assert httpx.post(f"{service.url}/v1/run_tests", json={"code": "1", "cases": [{}]}).status_code == 400


def test_over_capacity_requests_get_429_and_the_rest_complete():
    config = SandboxConfig(pool_size=1, max_queue=1)
    with ServiceThread(config) as running:

        async def scenario() -> tuple[list[object], httpx.Response]:
            async with SandboxClient(running.url, busy_retries=0) as client:
                first = asyncio.create_task(client.execute("import time\ntime.sleep(1)\nprint('first')"))
                await _until(client, lambda h: h["busy"] == 1)
                second = asyncio.create_task(client.execute("print('second')"))
                await _until(client, lambda h: h["queued"] == 1)
                async with httpx.AsyncClient() as raw:
                    refused = await raw.post(f"{running.url}/v1/execute", json={"code": "print(3)"})
                outcomes = await asyncio.gather(
                    first, second, client.execute("print('third')"), return_exceptions=True
                )
                return outcomes, refused

        (first, second, third), refused = asyncio.run(scenario())
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert first.stdout == "first\n" and second.stdout == "second\n"
        assert isinstance(third, SandboxBusyError)
        assert running.call("health")["queued"] == 0


async def _until(client: SandboxClient, condition) -> None:
    deadline = time.monotonic() + 10
    while not condition(await client.health()):
        assert time.monotonic() < deadline, "the service never reached the expected state"
        await asyncio.sleep(0.01)


def test_a_token_is_required_when_one_is_set():
    with ServiceThread(SandboxConfig(pool_size=1), token="s3cret", host="0.0.0.0") as running:
        with pytest.raises(SandboxAuthError, match="401"):
            running.call("execute", "print(1)", token="wrong")
        answer = httpx.post(f"{running.url}/v1/execute", json={"code": "print(1)"})
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert running.call("execute", "print(1)").stdout == "1\n"
        assert httpx.get(f"{running.url}/health").status_code == 200


def test_serving_beyond_loopback_without_a_token_is_refused(monkeypatch):
    monkeypatch.delenv("ASYNCRL_SANDBOX_TOKEN", raising=False)
    with pytest.raises(TokenRequiredError, match="--token"):
        serve(SandboxServeConfig(host="0.0.0.0", port=0))


def test_an_oversized_request_is_refused_before_it_is_read():
    with ServiceThread(SandboxConfig(pool_size=1, scratch_mb=1)) as running:
        huge = httpx.post(f"{running.url}/v1/execute", json={"code": "#" * (4 << 20)})
        assert huge.status_code == 413
        with pytest.raises(SandboxRequestError, match="scratch space of 1 MiB"):
            running.call("execute", "print(1)", files={"big.txt": "x" * (2 << 20)})
        assert running.call("execute", "print(1)").stdout == "1\n"
