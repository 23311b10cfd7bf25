"""Who may use the inference server and what it may be told to load: keys on every route but /health, a
separate admin key for /update_weights, a weights root, a list of weight sources, a cap on request bodies,
and no rollback to an older version. Each refusal loads and fetches nothing."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess

API_KEY, ADMIN_KEY = "generate-key", "admin-key"
USER = {"Authorization": f"Bearer {API_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


class CountingServer(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that answers 404 to everything and counts what it was asked."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def sources() -> Iterator[tuple[CountingServer, CountingServer]]:
    """Two weight sources: the first one listed in the server's config, the second not."""
    servers = (CountingServer(), CountingServer())
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers
    for s in servers:
        s.shutdown()


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory, tiny_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("run") / "weights"
    shutil.copytree(tiny_dir, root / "step_5")
    shutil.copytree(tiny_dir, root / "step_9")
    return root


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, tiny_dir, weights_root, sources) -> Iterator[InferenceServerProcess]:
    """The tiny model served with both keys (given in the environment), a weights root, one listed
    source, and a 1 MiB cap on request bodies."""
    listed, _ = sources
    config = InferenceConfig(port=0, num_threads=1, weights_root=weights_root, max_request_mb=1.0)
    config.broadcast.sources = [listed.url + "/"]
    keys = {"ASYNCRL_API_KEY": API_KEY, "ASYNCRL_ADMIN_KEY": ADMIN_KEY}
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    with InferenceServerProcess(ModelConfig(path="tiny"), config, 0, log, env=keys) as server:
        yield server


def _version(server: InferenceServerProcess) -> int:
    return httpx.get(f"{server.url}/health").json()["policy_version"]


def _update(server: InferenceServerProcess, body: dict, headers: dict = ADMIN) -> httpx.Response:
    return httpx.post(f"{server.url}/update_weights", json=body, headers=headers, timeout=60)


def test_every_route_but_health_needs_the_api_key(guarded):
    assert httpx.get(f"{guarded.url}/health").status_code == 200
    body = {"model": "tiny", "prompt": "hi", "max_tokens": 2}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        for method, route, kwargs in (
            ("GET", "/v1/models", {}),
            ("GET", "/metrics", {}),
            ("POST", "/v1/completions", {"json": body}),
            ("POST", "/tokenize", {"json": {"prompt": "hi"}}),
        ):
            response = httpx.request(method, guarded.url + route, headers=headers, **kwargs)
            assert response.status_code == 401, (route, headers, response.text)
            assert "Authorization: Bearer KEY" in response.json()["error"]["message"]
            assert response.headers["www-authenticate"] == "Bearer"
    completion = httpx.post(f"{guarded.url}/v1/completions", json=body, headers=USER, timeout=60)
    assert completion.status_code == 200, completion.text
    assert len(completion.json()["choices"][0]["text"]) > 0


def test_the_admin_route_needs_the_admin_key_not_the_api_key(guarded, weights_root):
    body = {"path": str(weights_root / "step_5"), "version": 5}
    assert _update(guarded, body, headers={}).status_code == 401
    refused = _update(guarded, body, headers=USER)
    assert refused.status_code == 403
    assert "admin key" in refused.json()["error"]["message"]
    assert _version(guarded) == 0
    # The admin key opens the admin route only.
    assert httpx.get(f"{guarded.url}/v1/models", headers=ADMIN).status_code == 401


def test_weights_load_only_from_under_the_weights_root(guarded, weights_root, tiny_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(tiny_dir, outside)
    (weights_root / "step_7").symlink_to(outside)  # a dir inside the root that leads out of it
    file_link = weights_root / "step_8"
    file_link.mkdir()
    (file_link / "model.safetensors").symlink_to(outside / "model.safetensors")
    for path in (outside, weights_root / "step_7", file_link):
        refused = _update(guarded, {"path": str(path), "version": 7})
        assert refused.status_code == 403, refused.text
        assert "outside this server's weights root" in refused.json()["error"]["message"]
    dotted = _update(guarded, {"path": f"{weights_root}/step_5/../../elsewhere", "version": 7})
    assert dotted.status_code == 400
    assert "`..`" in dotted.json()["error"]["message"]
    assert _version(guarded) == 0

    loaded = _update(guarded, {"path": str(weights_root / "step_5"), "version": 5})
    assert loaded.status_code == 200, loaded.text
    assert _version(guarded) == 5


def test_an_update_to_an_older_version_is_refused_with_409(guarded, weights_root):
    assert _update(guarded, {"path": str(weights_root / "step_9"), "version": 9}).status_code == 200
    older = _update(guarded, {"path": str(weights_root / "step_5"), "version": 5})
    assert older.status_code == 409
    assert "older than the serving policy v9" in older.json()["error"]["message"]
    assert _version(guarded) == 9
    assert _update(guarded, {"path": str(weights_root / "step_9"), "version": 9}).status_code == 200


def test_only_listed_weight_sources_are_fetched(guarded, sources):
    listed, unlisted = sources
    refused = _update(guarded, {"source": [unlisted.url], "version": 20})
    assert refused.status_code == 403
    assert listed.url in refused.json()["error"]["message"]
    mixed = _update(guarded, {"source": [listed.url, unlisted.url], "version": 20})
    assert mixed.status_code == 403
    assert unlisted.requests == [] and listed.requests == []
    # A listed source is asked (it is no shardcast node, so the fetch itself fails).
    asked = _update(guarded, {"source": [listed.url], "version": 20})
    assert asked.status_code >= 400 and listed.requests
    assert _version(guarded) < 20


def test_a_body_over_the_cap_gets_413_before_it_is_read(guarded):
    big = {"model": "tiny", "prompt": "x" * (2 * 2**20), "max_tokens": 1}
    response = httpx.post(f"{guarded.url}/v1/completions", json=big, headers=USER, timeout=10)
    assert response.status_code == 413
    assert "inference.max_request_mb" in response.json()["error"]["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the server counts what arrives
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'", "max_tokens": 1}'

    response = httpx.post(f"{guarded.url}/v1/completions", content=chunked(), headers=USER, timeout=10)
    assert response.status_code == 413
    small = httpx.post(
        f"{guarded.url}/v1/completions",
        content=iter([b'{"model": "tiny", "prompt": "hi", ', b'"max_tokens": 1}']),
        headers={**USER, "Content-Type": "application/json"},
        timeout=60,
    )
    assert small.status_code == 200, small.text


@pytest.mark.parametrize(
    "flags, missing",
    [
        ([], "--inference.api-key (or $ASYNCRL_API_KEY) and --inference.admin-key"),
        (["--inference.api-key", "k"], "--inference.admin-key (or $ASYNCRL_ADMIN_KEY)"),
    ],
)
def test_a_server_reachable_from_other_machines_refuses_to_start_without_keys(flags, missing, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "ASYNCRL_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "asyncrl.cli", "inference", "--model.path", str(tmp_path / "none")]
        + ["--inference.host", "0.0.0.0", "--inference.port", str(port), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1
    assert missing in done.stderr
    assert "lets other machines generate and swap the weights" in done.stderr


def test_the_admin_key_must_differ_from_the_api_key(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "asyncrl.cli", "inference", "--inference.api-key", "same"]
        + ["--inference.admin-key", "same"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "admin_key must differ from api_key" in done.stderr
