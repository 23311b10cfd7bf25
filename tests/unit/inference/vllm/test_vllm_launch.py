"""The vLLM command line asyncrl builds: defaults per device, engine arguments passed through, the
interpreter that has vLLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from asyncrl.config import ConfigError, load_config
from asyncrl.inference.config import InferenceServerConfig
from asyncrl.inference.vllm import launch as vllm_launch
from asyncrl.inference.vllm.launch import (
    WORKER_MODULE,
    VLLMProcessError,
    build_launch,
    engine_arg_flags,
    vllm_python,
    worker_extension_dir,
)


def _launch(*overrides: str, max_model_len: int = 512):
    config = load_config(InferenceServerConfig, ["--inference.backend", "vllm", *overrides])
    return build_launch(config, Path("/models/m"), max_model_len)


def _value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_cpu_defaults_fit_a_shared_cpu_box():
    launch = _launch("--inference.vllm.device", "cpu", "--inference.num-threads", "2", "--seed", "5")
    command = launch.command
    assert command[1:5] == ["-W", "ignore::DeprecationWarning", "-m", "vllm.entrypoints.openai.api_server"]
    assert _value(command, "--model") == "/models/m"
    assert _value(command, "--host") == "127.0.0.1"
    assert _value(command, "--max-model-len") == "512"
    assert _value(command, "--seed") == "5"
    assert _value(command, "--logprobs-mode") == "processed_logprobs"
    assert "--enforce-eager" in command and "--gpu-memory-utilization" not in command
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert launch.env["OMP_NUM_THREADS"] == "2"
    assert launch.env["VLLM_SERVER_DEV_MODE"] == "1"
    assert launch.env["VLLM_HOST_IP"] == "127.0.0.1"


def test_cuda_defaults_use_the_gpu_memory_and_graphs():
    launch = _launch(
        "--inference.vllm.device", "cuda", "--inference.vllm.gpu-memory-utilization", "0.5",
        "--inference.vllm.cuda-visible-devices", "2,3", "--inference.vllm.tensor-parallel-size", "2",
    )  # fmt: skip
    assert "--enforce-eager" not in launch.command
    assert _value(launch.command, "--gpu-memory-utilization") == "0.5"
    assert _value(launch.command, "--tensor-parallel-size") == "2"
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert "VLLM_CPU_KVCACHE_SPACE" not in launch.env


def test_unlisted_keys_are_passed_to_vllm_and_extra_args_come_last():
    launch = _launch(
        "--inference.vllm.device", "cpu",
        "--inference.vllm.max-num-batched-tokens", "8192",
        "--inference.vllm.enable-prefix-caching", "false",
        "--inference.vllm.enable-chunked-prefill", "true",
        "--inference.vllm.extra-args", '["--kv-cache-dtype", "auto"]',
    )  # fmt: skip
    command = launch.command
    assert _value(command, "--max-num-batched-tokens") == "8192"
    assert "--no-enable-prefix-caching" in command
    assert "--enable-chunked-prefill" in command
    assert command[-2:] == ["--kv-cache-dtype", "auto"]


def test_engine_arg_flags_spell_values_as_vllm_reads_them():
    flags = engine_arg_flags({"compilation_config": {"mode": 0}, "quantization": None, "swap_space": 4})
    assert flags == ["--compilation-config", json.dumps({"mode": 0}), "--swap-space", "4"]


def test_nccl_weight_transfer_starts_vllms_transfer_engine():
    launch = _launch("--inference.vllm.device", "cuda", "--inference.vllm.weight-transfer", "nccl")
    assert json.loads(_value(launch.command, "--weight-transfer-config")) == {"backend": "nccl"}
    assert "--weight-transfer-config" not in _launch("--inference.vllm.device", "cuda").command


def test_worker_extension_imports_where_asyncrl_is_not_installed():
    directory = worker_extension_dir()
    assert [p.name for p in directory.glob("*.py")] == [f"{WORKER_MODULE}.py"]
    launch = _launch("--inference.vllm.device", "cpu")
    assert launch.env["PYTHONPATH"].split(os.pathsep)[0] == str(directory)
    assert _value(launch.command, "--worker-extension-cls") == f"{WORKER_MODULE}.WeightReloadExtension"
    # -S: no site-packages, so neither asyncrl nor vllm is importable, as in vLLM's own environment.
    probe = (
        f"import sys, importlib.util; sys.path.insert(0, {str(directory)!r}); import {WORKER_MODULE}; "
        f"assert importlib.util.find_spec('asyncrl') is None; print({WORKER_MODULE}.WeightReloadExtension)"
    )
    result = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_interpreter_with_vllm_is_found_in_the_documented_order(monkeypatch, tmp_path):
    config = load_config(InferenceServerConfig, ["--inference.vllm.python", "/opt/vllm/bin/python"])
    assert vllm_python(config.inference.vllm) == "/opt/vllm/bin/python"
    default = InferenceServerConfig().inference.vllm
    monkeypatch.setenv("ASYNCRL_VLLM_PYTHON", "/env/python")
    assert vllm_python(default) == "/env/python"
    monkeypatch.delenv("ASYNCRL_VLLM_PYTHON")
    installed = types.SimpleNamespace(origin="/site-packages/vllm/__init__.py")
    monkeypatch.setattr(vllm_launch.importlib.util, "find_spec", lambda name: installed)
    assert vllm_python(default) == sys.executable
    monkeypatch.undo()
    monkeypatch.delenv("ASYNCRL_VLLM_PYTHON", raising=False)
    # A folder named vllm on sys.path (this checkout's tests/unit/inference/vllm/, once pytest puts its
    # parent there) imports as an empty namespace package: it is not vLLM.
    (tmp_path / "vllm").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(vllm_launch, "CHECKOUT_VENV", tmp_path / "missing")
    with pytest.raises(VLLMProcessError, match="make vllm"):
        vllm_python(default)


def test_toploc_needs_the_torch_backend():
    with pytest.raises(ConfigError, match="torch backend only"):
        load_config(InferenceServerConfig, ["--inference.backend", "vllm", "--inference.toploc", "true"])
