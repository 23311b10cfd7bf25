"""The GPU example configs (not run here: no GPU) load key for key, agree with each other, and give vLLM a
command line its own argument parser accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from asyncrl.config import load_config
from asyncrl.config_loader import BaseConfig
from asyncrl.inference.config import InferenceServerConfig
from asyncrl.inference.vllm.launch import VLLM_SERVER_MODULE, build_launch, vllm_python
from asyncrl.launcher.config import RLConfig
from asyncrl.orchestrator.config import OrchestratorProcessConfig
from asyncrl.trainer.config import TrainerProcessConfig

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
COMMAND_OF = {
    "rl_2gpu_vllm.toml": RLConfig,
    "gpu8_inference.toml": InferenceServerConfig,
    "gpu8_orchestrator.toml": OrchestratorProcessConfig,
    "gpu8_trainer.toml": TrainerProcessConfig,
}


def test_every_gpu_config_is_covered():
    assert sorted(p.name for p in CONFIGS.glob("*gpu*.toml")) == sorted(COMMAND_OF)


@pytest.mark.parametrize("name", sorted(COMMAND_OF))
def test_every_key_loads_into_its_commands_config(name):
    # Every section forbids unknown keys, so a misspelt one fails here; inference.vllm passes unlisted
    # keys to vLLM, which the next test has vLLM check.
    config = load_config(COMMAND_OF[name], ["-c", str(CONFIGS / name)])
    assert isinstance(config, BaseConfig)


def test_the_eight_gpu_processes_share_one_run():
    orchestrator = load_config(OrchestratorProcessConfig, ["-c", str(CONFIGS / "gpu8_orchestrator.toml")])
    trainer = load_config(TrainerProcessConfig, ["-c", str(CONFIGS / "gpu8_trainer.toml")])
    server = load_config(InferenceServerConfig, ["-c", str(CONFIGS / "gpu8_inference.toml")])
    assert orchestrator.output_dir == trainer.output_dir
    assert orchestrator.max_steps == trainer.max_steps
    assert orchestrator.model.path == trainer.model.path == server.model.path
    ports = [int(url.rsplit(":", 1)[1]) for url in orchestrator.orchestrator.client.base_urls]
    assert ports == [server.inference.port + i for i in range(4)]
    assert server.inference.backend == "vllm"


def _server_configs() -> dict[str, InferenceServerConfig]:
    rl = load_config(RLConfig, ["-c", str(CONFIGS / "rl_2gpu_vllm.toml")])
    return {
        "rl_2gpu_vllm.toml": InferenceServerConfig(seed=rl.seed, model=rl.model, inference=rl.inference),
        "gpu8_inference.toml": load_config(
            InferenceServerConfig, ["-c", str(CONFIGS / "gpu8_inference.toml")]
        ),
    }


@pytest.mark.slow
def test_vllm_accepts_the_command_lines_of_the_gpu_configs():
    probe = (
        "import json, sys\n"
        "from vllm.entrypoints.launchers.cli_args import make_arg_parser\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "for argv in json.loads(sys.stdin.read()):\n"
        "    args = make_arg_parser(FlexibleArgumentParser()).parse_args(argv)\n"
        "    print(args.model, args.gpu_memory_utilization, args.max_num_batched_tokens)\n"
    )
    argvs = []
    for config in _server_configs().values():
        config.inference.vllm.device = "cuda"  # the GPU box these are written for
        launch = build_launch(config, Path(config.model.path), config.inference.max_model_len or 4096)
        module_at = launch.command.index(VLLM_SERVER_MODULE)
        argvs.append([*launch.command[module_at + 1 :], "--port", "8000"])
    python = vllm_python(InferenceServerConfig().inference.vllm)
    result = subprocess.run(
        [python, "-c", probe], input=json.dumps(argvs), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [
        "/models/Qwen2.5-1.5B-Instruct", "0.85", "8192",
        "/models/Qwen2.5-7B-Instruct", "0.9", "16384",
    ]  # fmt: skip
