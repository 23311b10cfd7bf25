"""Shared fixtures: an isolated model cache and real inference servers in subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests skip cleanly where torch sees no CUDA device, so CI on CPUs stays green."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (scripts/gpu_check.sh runs the gpu tests)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test builds and reads the tiny model in its own cache, never the user's."""
    cache = tmp_path_factory.mktemp("asyncrl-cache")
    os.environ["ASYNCRL_CACHE_DIR"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    from asyncrl.models import tiny_model_dir

    return tiny_model_dir()


def _server(model_path: str, log_path: Path) -> InferenceServerProcess:
    # One engine thread: the test process and the server share the CPU.
    config = InferenceConfig(port=0, num_threads=1)  # a free port each
    return InferenceServerProcess(ModelConfig(path=model_path), config, 0, log_path)


@pytest.fixture()
def start_server(tmp_path: Path, tiny_dir: Path) -> Iterator[Callable[[str], InferenceServerProcess]]:
    """Start `asyncrl inference` on a model path; every server started is stopped afterwards."""
    started: list[InferenceServerProcess] = []

    def start(model_path: str) -> InferenceServerProcess:
        started.append(_server(model_path, tmp_path / f"server{len(started)}.log").__enter__())
        return started[-1]

    yield start
    for proc in started:
        proc.__exit__()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Iterator[InferenceServerProcess]:
    """One tiny-model server shared by a test module (tests that change weights start their own)."""
    with _server("tiny", tmp_path_factory.mktemp("server") / "server.log") as proc:
        yield proc
