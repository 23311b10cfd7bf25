"""Config of the inference server (`asyncrl inference`) and its engines."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from asyncrl.broadcast.config import InferenceBroadcastConfig
from asyncrl.config import Device, ModelConfig
from asyncrl.config_loader import BaseConfig
from asyncrl.toploc.config import ProofConfig

API_KEY_ENV = "ASYNCRL_API_KEY"
ADMIN_KEY_ENV = "ASYNCRL_ADMIN_KEY"


class VLLMConfig(BaseConfig):
    """vLLM behind asyncrl's server (`inference.backend = "vllm"`). Any key not listed here is a vLLM engine
    argument, passed on as `--key value` (a flag: `true`; `false` gives `--no-key`): for example
    `--inference.vllm.max-num-batched-tokens 8192` or `[inference.vllm] enable_prefix_caching = false`."""

    # Unlisted keys are vLLM's own engine arguments: vLLM checks them when it starts, and an unknown one
    # stops it with its own error message.
    model_config = ConfigDict(extra="allow")

    python: str | None = None
    """Interpreter of the environment vLLM is installed in; vLLM runs as a child process under it. Default:
    $ASYNCRL_VLLM_PYTHON, else this interpreter if it can import vllm (`pip install asyncrl[vllm]`), else
    the checkout's .venv-vllm/bin/python (vLLM's CPU build, made by `make vllm`)."""

    device: Device = "auto"
    """Where vLLM runs; "auto": cuda when torch sees a GPU, else cpu. The defaults below follow it."""

    cuda_visible_devices: str | None = None
    """GPUs of the vLLM process (its CUDA_VISIBLE_DEVICES, e.g. "0" or "0,1"); default: all this process
    sees. With one GPU for vLLM and another for the trainer, see README "vLLM and GPUs"."""

    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs one vLLM server shards the model over."""

    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    """cuda: share of each GPU's memory vLLM may take (weights, activations and KV cache)."""

    cpu_kv_cache_gib: int = Field(1, ge=1)
    """cpu: GiB of RAM for the KV cache (vLLM's VLLM_CPU_KVCACHE_SPACE)."""

    enforce_eager: bool | None = None
    """Run without CUDA graphs and torch.compile; default: on cpu (compiling costs more than it saves for
    the small models run there), not on cuda."""

    weight_transfer: Literal["file", "nccl"] = "file"
    """How new weights reach vLLM. "file": `/update_weights {"path", "version"}` reloads a published
    weights dir (the default; the only one tested here). "nccl": vLLM also starts its NCCL weight-transfer
    engine, so a trainer on GPUs can push weights through vLLM's own routes at the URL logged at start-up
    (README "vLLM and GPUs"; not exercised in CI); `/update_weights` with a path keeps working."""

    port: int = Field(0, ge=0, le=65535)
    """Port of vLLM's own HTTP server on 127.0.0.1, behind asyncrl's (0: a free one)."""

    startup_timeout_s: float = Field(900.0, gt=0)
    """Give up, with vLLM's output, when it is not serving after this long."""

    extra_args: list[str] = []
    """`vllm serve` arguments appended as they are, after everything else, e.g. ["--kv-cache-dtype",
    "fp8"]."""


class InferenceConfig(BaseConfig):
    backend: Literal["torch", "vllm"] = "torch"
    """Engine behind the server: the built-in torch engine, or vLLM (a child process, see `vllm`); both
    serve the same HTTP API."""

    host: str = "127.0.0.1"
    """Address the HTTP server binds to; any but a loopback address requires `api_key` and `admin_key`."""

    port: int = Field(8000, ge=0, le=65535)
    """TCP port of the HTTP server (0 picks a free one)."""

    api_key: str | None = Field(None, exclude=True)  # a secret: never written to a run's files
    """Bearer token every route but /health requires (`Authorization: Bearer KEY`, as vLLM's --api-key);
    default: $ASYNCRL_API_KEY; none: open, allowed on a loopback address only."""

    admin_key: str | None = Field(None, exclude=True)  # a secret: never written to a run's files
    """Bearer token of the admin route, `/update_weights`, which swaps the served policy (it must differ
    from api_key); default: $ASYNCRL_ADMIN_KEY; none: open, allowed on a loopback address only."""

    weights_root: Path | None = None
    """`/update_weights {"path"}` loads only dirs under this one, symlinks resolved (`asyncrl rl` sets the
    run's weights/); none: any dir on a loopback address, no dir on any other (use `source`)."""

    max_request_mb: float = Field(8.0, gt=0)
    """Request bodies larger than this are refused with 413 before they are read."""

    served_model_name: str | None = None
    """Name clients pass as `model`; defaults to `model.name`, else `model.path`."""

    device: Device = "auto"
    """Where the torch engine runs (weights, KV cache, sampling): "auto" is CUDA device 0 when torch sees a
    GPU (pick one with CUDA_VISIBLE_DEVICES), else the CPU. vLLM's is `vllm.device`."""

    max_num_seqs: int = Field(64, ge=1)
    """Most sequences decoded together in one batch; more requests wait in a queue."""

    max_model_len: int | None = Field(None, ge=2)
    """Context window (prompt + completion tokens); defaults to the model's `max_position_embeddings`."""

    max_prefill_tokens: int = Field(2048, ge=1)
    """Prompt tokens prefilled per engine step, so new requests do not starve running ones (torch backend;
    vLLM's own budget is `vllm.max_num_batched_tokens`)."""

    num_threads: int = Field(0, ge=0)
    """CPU threads of the engine (0: the engine's default); vLLM on cpu gets it as OMP_NUM_THREADS.
    Processes that share a box split the cores."""

    tool_call_parser: Literal["hermes", "off"] = "hermes"
    """How chat answers to requests with `tools` are read into `tool_calls` ("off": left as text)."""

    reasoning_parser: Literal["deepseek_r1", "off"] = "off"
    """Split `<think>...</think>` out of chat answers into `reasoning_content` ("off": left as text)."""

    toploc: ProofConfig = ProofConfig()
    """TOPLOC proofs of generations (`inference.toploc = true` proves every one)."""

    vllm: VLLMConfig = VLLMConfig()
    """vLLM, when backend = "vllm": how asyncrl starts it. Any other key here is a vLLM engine argument,
    passed on: --inference.vllm.max-num-batched-tokens 8192 (true: a bare flag; false: --no-...)."""

    @model_validator(mode="after")
    def _proofs_need_the_torch_engine(self) -> InferenceConfig:
        if self.toploc.enabled and self.backend != "torch":
            raise ValueError('toploc proofs are built by the torch backend only: set backend = "torch"')
        return self

    broadcast: InferenceBroadcastConfig = InferenceBroadcastConfig()
    """Shardcast: where and how `/update_weights {"source": [URLs], "version": N}` fetches weights."""


class InferenceServerConfig(BaseConfig):
    """`asyncrl inference`: the inference server alone."""

    seed: int = 0
    """Seed of the sampler for requests that do not give their own."""

    model: ModelConfig = ModelConfig()
    """The served model."""

    inference: InferenceConfig = InferenceConfig()
    """The server and its engine."""
