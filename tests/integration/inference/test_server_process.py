from __future__ import annotations

import pytest

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess, ServerStartError


def test_a_taken_port_is_an_error_not_someone_elses_server(server, tmp_path):
    taken = InferenceConfig(port=server.port, num_threads=1)
    with pytest.raises(ServerStartError, match="could not bind"):
        with InferenceServerProcess(ModelConfig(path="tiny"), taken, 0, tmp_path / "server.log"):
            pass


def test_a_bad_model_path_fails_with_the_servers_own_message(tmp_path):
    config = InferenceConfig(port=0, num_threads=1)
    with pytest.raises(ServerStartError, match="does not exist"):
        with InferenceServerProcess(ModelConfig(path=str(tmp_path / "nope")), config, 0, tmp_path / "s.log"):
            pass


def test_every_inference_option_reaches_the_server(tmp_path):
    import httpx

    config = InferenceConfig(port=0, num_threads=1, max_model_len=64, served_model_name="small")
    with InferenceServerProcess(ModelConfig(path="tiny"), config, 0, tmp_path / "s.log") as server:
        card = httpx.get(f"{server.url}/v1/models").json()["data"][0]
    assert card["id"] == "small" and card["max_model_len"] == 64
