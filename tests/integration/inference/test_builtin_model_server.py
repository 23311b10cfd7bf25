"""`asyncrl inference` on a built-in recipe's name builds the model through asyncrl.builtin_models (the
layer above the processes) on an empty cache, then serves it under that name."""

import subprocess
import sys

import httpx
import pytest

from asyncrl.config import ModelConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.server_process import InferenceServerProcess


@pytest.mark.slow
def test_inference_on_an_empty_cache_builds_the_warm_model_and_serves_it_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYNCRL_CACHE_DIR", str(tmp_path / "cache"))
    model = ModelConfig(path="tiny-reverse-text")
    inference = InferenceConfig(port=0, num_threads=1)
    with InferenceServerProcess(model, inference, 0, tmp_path / "server.log") as server:
        card = httpx.get(f"{server.url}/v1/models").json()["data"][0]
    assert card["id"] == "tiny-reverse-text"
    built = tmp_path / "cache" / "models" / "tiny-reverse-text-v1"
    assert (built / "config.json").is_file() and list(built.glob("*.safetensors"))


def test_a_recipe_name_below_the_cli_is_a_clear_error_not_a_training_run(tmp_path):
    # Processes only see directories: a library caller naming a recipe is told where names are resolved.
    code = (
        "import sys\n"
        "from asyncrl.models import ModelLoadError, load_model\n"
        "try:\n"
        "    load_model('tiny-reverse-text')\n"
        "except ModelLoadError as e:\n"
        "    print(e)\n"
        "assert 'asyncrl.trainer' not in sys.modules\n"
    )
    env = {"ASYNCRL_CACHE_DIR": str(tmp_path), "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "builtin_models" in result.stdout and "tiny-reverse-text" in result.stdout
    assert not (tmp_path / "models").exists(), "nothing was built"
