"""The inference contract, tested on both backends: the built-in torch engine and vLLM (its CPU build, in
the checkout's .venv-vllm that `make test` installs). A vLLM server takes about 30 s to start, so one
serves the whole session; tests that change weights start their own. "cuda" is the built-in engine on
the GPU (`gpu` tests: scripts/gpu_check.sh runs them where there is one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess

BACKENDS = [
    "torch",
    pytest.param("vllm", marks=pytest.mark.slow),
    pytest.param("cuda", marks=pytest.mark.gpu),
]


def inference_server(model_path: str, backend: str, log_path: Path) -> InferenceServerProcess:
    # One engine thread: the test process and the server share the CPU.
    engine = {"backend": "torch", "device": "cuda"} if backend == "cuda" else {"backend": backend}
    config = InferenceConfig(port=0, num_threads=1, **engine)  # a free port each
    return InferenceServerProcess(ModelConfig(path=model_path), config, 0, log_path)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, for tests that start servers of their own."""
    return request.param


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Iterator[InferenceServerProcess]:
    """`asyncrl inference --inference.backend vllm` on the tiny model, shared by the session."""
    with inference_server("tiny", "vllm", tmp_path_factory.mktemp("vllm") / "server.log") as proc:
        yield proc


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path
) -> Iterator[InferenceServerProcess]:
    """The tiny model served by each backend in turn (tests that change weights start their own)."""
    if request.param == "vllm":
        yield request.getfixturevalue("vllm_server")
        return
    with inference_server("tiny", request.param, tmp_path_factory.mktemp("server") / "server.log") as proc:
        yield proc


@pytest.fixture()
def start_server(tmp_path: Path, tiny_dir: Path) -> Iterator[Callable[..., InferenceServerProcess]]:
    """Start `asyncrl inference` on a model path with a backend; every server started is stopped after."""
    started: list[InferenceServerProcess] = []

    def start(model_path: str, backend: str = "torch") -> InferenceServerProcess:
        log = tmp_path / f"server{len(started)}.log"
        started.append(inference_server(model_path, backend, log).__enter__())
        return started[-1]

    yield start
    for proc in started:
        proc.__exit__()
