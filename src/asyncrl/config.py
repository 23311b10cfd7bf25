"""Typed configs: one pydantic model per section and per command, composed from TOML files plus
`--section.key value` overrides (see config_loader).

Every field carries its own docstring and its default; `--help` is generated from them, so the
pydantic field is the one source of defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from asyncrl.broadcast.config import InferenceBroadcastConfig, WeightSourcesConfig

# ConfigError, format_help and load_config are re-exported: `asyncrl.config` is the public config API.
from asyncrl.config_loader import BaseConfig, ConfigError, format_help, load_config  # noqa: F401


def _not_a_file(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; give a directory (an existing one, or one to create)")
    return path


OutputDir = Annotated[Path, AfterValidator(_not_a_file)]
"""A run's or an eval's output directory."""


class ModelConfig(BaseConfig):
    path: str = "tiny"
    """Local Hugging Face model directory, or a built-in offline model (built on first use): `tiny`, or
    `tiny-reverse-text` (tiny after a short SFT on reverse-text)."""

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: Any) -> Any:
        """`--model X` (or `model = "X"` in TOML) is short for `--model.path X`."""
        return {"path": value} if isinstance(value, str) else value

    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights and activations dtype."""


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

    device: Literal["auto", "cpu", "cuda"] = "auto"
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
    """Address the HTTP server binds to."""

    port: int = Field(8000, ge=0, le=65535)
    """TCP port of the HTTP server (0 picks a free one)."""

    served_model_name: str | None = None
    """Name clients pass as `model`; defaults to `model.path`."""

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

    toploc: bool = False
    """Build TOPLOC proofs of every generation (a request can also ask with `"toploc": true`); each choice
    then carries `toploc_proofs`, one per 32 tokens (ToplocConfig's default chunk_size and top_k). Torch
    backend only."""

    vllm: VLLMConfig = VLLMConfig()
    """vLLM, when backend = "vllm": how asyncrl starts it. Any other key here is a vLLM engine argument,
    passed on: --inference.vllm.max-num-batched-tokens 8192 (true: a bare flag; false: --no-...)."""

    @model_validator(mode="after")
    def _proofs_need_the_torch_engine(self) -> InferenceConfig:
        if self.toploc and self.backend != "torch":
            raise ValueError('toploc proofs are built by the torch backend only: set backend = "torch"')
        return self

    broadcast: InferenceBroadcastConfig = InferenceBroadcastConfig()
    """Shardcast: where and how `/update_weights {"source": [URLs], "version": N}` fetches weights."""


class LossConfig(BaseConfig):
    type: Literal["masked_is", "dppo_kl", "grpo_clip", "sft", "custom"] = "masked_is"
    """RL loss: importance-ratio masking (masked_is), DPPO-binary + KL (dppo_kl), PPO clip (grpo_clip),
    cross-entropy (sft), or a user function (custom, see import_path)."""

    token_low: float = Field(0.125, gt=0)
    """masked_is: tokens whose ratio exp(logp_train - logp_inference) is below this are masked."""

    token_high: float = Field(8.0, gt=0)
    """masked_is: tokens whose ratio is above this are masked."""

    seq_low: float = Field(0.5, gt=0)
    """masked_is: samples whose geometric-mean ratio is below this are masked whole."""

    seq_high: float = Field(2.0, gt=0)
    """masked_is: samples whose geometric-mean ratio is above this are masked whole."""

    mismatch_kl_coef: float = Field(0.0, ge=0)
    """masked_is: weight of a k3 KL(inference || trainer) penalty (0: reported only)."""

    mask_low: float = Field(0.2, ge=0)
    """dppo_kl: drop a token with advantage <= 0 when p_train - p_inference < -mask_low."""

    mask_high: float = Field(0.2, ge=0)
    """dppo_kl: drop a token with advantage > 0 when p_train - p_inference > mask_high."""

    kl_tau: float = Field(1e-3, ge=0)
    """dppo_kl: weight of the (log ratio)^2 penalty."""

    clip_eps: float = Field(0.2, gt=0)
    """grpo_clip: the ratio is clipped to [1 - clip_eps, 1 + clip_eps]."""

    clip_delta: float = Field(4.0, gt=1)
    """grpo_clip: upper bound on the ratio for tokens with negative advantage."""

    import_path: str | None = None
    """custom: `module:function` with the signature of asyncrl.trainer.losses (LossInputs, LossConfig)."""


class OptimConfig(BaseConfig):
    type: Literal["adamw", "muon"] = "adamw"
    """AdamW for everything, or Muon for 2-D hidden matrices with AdamW for the rest."""

    lr: float = Field(1e-4, gt=0)
    """Peak learning rate."""

    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay."""

    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""

    eps: float = Field(1e-8, gt=0)
    """AdamW epsilon."""

    muon_momentum: float = Field(0.95, ge=0, lt=1)
    """Muon momentum (Nesterov)."""

    muon_ns_dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype of Muon's Newton-Schulz iteration: bfloat16 is torch.optim.Muon's choice and fast on GPUs;
    float32 is fast on CPUs and keeps sharded and unsharded runs equal within float tolerance."""

    max_grad_norm: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this (0: no clipping)."""

    scheduler: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate shape after warm-up."""

    warmup_steps: int = Field(0, ge=0)
    """Steps of linear warm-up from 0 to lr."""

    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """linear/cosine: the final learning rate as a fraction of lr."""


class CheckpointConfig(BaseConfig):
    interval: int = Field(10, ge=0)
    """Save a resumable checkpoint every this many steps (0: never)."""

    keep_last: int = Field(2, ge=1)
    """Checkpoints kept; older ones are deleted."""


class TrainerConfig(BaseConfig):
    loss: LossConfig = LossConfig()
    """The loss."""

    optim: OptimConfig = OptimConfig()
    """Optimizer and learning-rate schedule."""

    checkpoint: CheckpointConfig = CheckpointConfig()
    """Resumable checkpoints."""

    row_tokens: int = Field(512, ge=16)
    """Length of a packed row: samples are laid end to end in rows of at most this many tokens (a longer
    sample gets a row of its own). Attention over a row costs its length squared."""

    micro_batch_tokens: int = Field(4096, ge=16)
    """Tokens of one micro-batch (one forward/backward): rows are stacked, padded, up to this."""

    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass to save memory."""

    batch_timeout_s: float = Field(3600.0, gt=0)
    """Give up waiting for a rollout batch after this long."""

    num_threads: int = Field(0, ge=0)
    """Torch CPU threads per rank (0: torch's default)."""


class SFTConfig(BaseConfig):
    data: Path | None = None
    """JSONL file: one {"prompt", "completion"} or {"messages": [...]} object per line."""

    eval_data: Path | None = None
    """Separate JSONL eval set; without it, `eval_fraction` of `data` is held out."""

    eval_fraction: float = Field(0.05, ge=0, lt=1)
    """Fraction of `data` held out for eval loss when no `eval_data` is given."""

    epochs: int = Field(1, ge=1)
    """Passes over the training data (unless max_steps stops earlier)."""

    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps."""

    batch_size: int = Field(32, ge=1)
    """Samples per optimizer step."""

    eval_interval: int = Field(50, ge=1)
    """Compute the eval loss every this many steps (and after the last)."""


class SamplingConfig(BaseConfig):
    temperature: float = Field(1.0, ge=0)
    """Sampling temperature (0: greedy)."""

    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling mass."""

    max_tokens: int = Field(128, ge=1)
    """Most tokens one model turn may generate."""


class EnvSpec(BaseConfig):
    name: str = "reverse-text"
    """Environment name (`asyncrl env list`)."""

    args: dict[str, Any] = {}
    """Keyword arguments of its load_environment."""


class ClientConfig(BaseConfig):
    base_urls: list[str] = Field(["http://127.0.0.1:8000"], min_length=1)
    """Inference servers (at least one); each rollout goes to the least loaded live one."""

    timeout_s: float = Field(600.0, gt=0)
    """Give up on one model request after this long."""

    retries: int = Field(2, ge=0)
    """Retries on one server before it is marked dead and its rollouts move to the others."""


class VerifyConfig(BaseConfig):
    fraction: float = Field(0.0, ge=0, le=1)
    """Share of rollouts whose TOPLOC proofs and sampling the orchestrator checks against the weights
    that generated them; a group with a failing rollout is dropped from its batch and counted. Turns
    generated across a weight update (two policies) cannot be checked and are counted as skipped."""

    rollouts_file: bool = False
    """Write every batch's turns, with their proofs, to toploc/step_<N>.jsonl (the rollouts file of
    `asyncrl toploc verify`, plus each line's `policy_version`)."""

    @property
    def proofs(self) -> bool:
        """Whether generation must build proofs."""
        return self.fraction > 0 or self.rollouts_file


class OrchestratorConfig(BaseConfig):
    env: EnvSpec = EnvSpec()
    """The environment rollouts come from."""

    batch_size: int = Field(64, ge=1)
    """Rollouts per step (a multiple of group_size)."""

    group_size: int = Field(8, ge=1)
    """Rollouts per task; advantages are relative to the group's mean reward."""

    max_inflight: int = Field(64, ge=1)
    """Rollouts running at once across all servers."""

    async_level: int = Field(1, ge=0)
    """Steps the orchestrator may run ahead of the newest weights (0: synchronous, on-policy)."""

    max_off_policy_steps: int = Field(2, ge=1)
    """Step N trains only on samples from policies >= N - max_off_policy_steps; staler ones are
    discarded and counted (1 means strictly on-policy)."""

    normalize_advantages: bool = False
    """Divide group advantages by the group's reward std."""

    drop_zero_advantage: bool = False
    """Leave out groups whose rewards are all equal (they carry no signal)."""

    mask_truncated: bool = False
    """Train on no token of a rollout cut off at sampling.max_tokens (it still counts in its group's
    mean reward)."""

    max_seq_len: int | None = Field(None, ge=1)
    """Drop groups with a rollout longer than this many tokens (prompt included), and count them."""

    difficulty_filter: bool = False
    """Online difficulty filtering: a group whose every reward is >= easy_reward or <= hard_reward is
    dropped, and its task is retired from later epochs."""

    easy_reward: float = 1.0
    """difficulty_filter: a task whose whole group reaches this is too easy."""

    hard_reward: float = 0.0
    """difficulty_filter: a task whose whole group stays at or below this is too hard."""

    samples_per_step: int = Field(4, ge=0)
    """Decoded rollouts written to samples/step_<N>.jsonl for people to read."""

    weights_timeout_s: float = Field(3600.0, gt=0)
    """Give up waiting for the trainer's weights after this long."""

    weights: WeightSourcesConfig = WeightSourcesConfig()
    """Where the inference servers get new weights: the run dir, or shardcast sources (no shared disk)."""

    sampling: SamplingConfig = SamplingConfig()
    """Sampling of every model turn."""

    client: ClientConfig = ClientConfig()
    """The inference servers."""

    verify: VerifyConfig = VerifyConfig()
    """TOPLOC: checking that rollouts came from the claimed weights."""

    @model_validator(mode="after")
    def _whole_groups(self) -> OrchestratorConfig:
        if self.batch_size % self.group_size:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of group_size {self.group_size}"
            )
        return self


# Process configs: what each command accepts.


class TrainerProcessConfig(BaseConfig):
    """`asyncrl trainer`: the RL trainer alone (under torchrun for several ranks)."""

    output_dir: OutputDir = Path("runs/default")
    """Run directory: rollouts are read from it, weights, checkpoints and metrics written to it."""

    max_steps: int = Field(30, ge=1)
    """Optimizer steps to run."""

    seed: int = 0
    """Seed of torch's RNG."""

    resume: str | None = None
    """Resume from `latest` or a step number's checkpoint in output_dir/checkpoints."""

    model: ModelConfig = ModelConfig()
    """The model trained (its initial weights)."""

    trainer: TrainerConfig = TrainerConfig()
    """The trainer."""


class OrchestratorProcessConfig(BaseConfig):
    """`asyncrl orchestrator`: rollouts from the inference servers into batches for the trainer."""

    output_dir: OutputDir = Path("runs/default")
    """Run directory shared with the trainer: rollouts/ are written, weights/ watched."""

    max_steps: int = Field(30, ge=1)
    """Batches to produce."""

    seed: int = 0
    """Seed of the task order."""

    model: ModelConfig = ModelConfig()
    """The model the inference servers serve (its path is the name requests use)."""

    orchestrator: OrchestratorConfig = OrchestratorConfig()
    """The orchestrator."""


class SFTProcessConfig(BaseConfig):
    """`asyncrl sft`: supervised fine-tuning (loss on completion/assistant tokens only)."""

    output_dir: OutputDir = Path("runs/sft")
    """Run directory: weights/step_<N>/ (HF layout, loadable by `--model.path`), checkpoints, metrics."""

    seed: int = 0
    """Seed of the data order and torch's RNG."""

    resume: str | None = None
    """Resume from `latest` or a step number's checkpoint in output_dir/checkpoints."""

    model: ModelConfig = ModelConfig()
    """The model fine-tuned (its initial weights)."""

    trainer: TrainerConfig = TrainerConfig()
    """Optimizer, micro-batch size and checkpoints (the loss is always cross-entropy)."""

    sft: SFTConfig = SFTConfig()
    """Data and schedule."""


class EvalConfig(BaseConfig):
    """`asyncrl eval ENV`: run an environment against a model and report its rewards."""

    env: str = "reverse-text"
    """Environment name (`asyncrl env list`); also the first positional argument."""

    env_args: dict[str, Any] = {}
    """Keyword arguments of the environment's load_environment, as JSON: --env-args '{"seed": 1}'."""

    base_url: str | None = None
    """An OpenAI-compatible server (e.g. http://host:8000/v1) whose model `model.path` names; without
    it, the built-in server is started on `model.path`."""

    api_key: str | None = None
    """Bearer token for `base_url`."""

    retries: int = Field(5, ge=0)
    """Retries, with exponential backoff from 0.5 s, of a request the model server failed or never got."""

    num_examples: int = Field(20, ge=1)
    """Tasks evaluated (the first ones of the environment's dataset)."""

    rollouts_per_example: int = Field(4, ge=1)
    """Rollouts per task; pass@k is reported for k up to this."""

    max_concurrent: int = Field(32, ge=1)
    """Rollouts in flight at once."""

    pass_threshold: float = 1.0
    """A rollout counts as passing for pass@k when its reward is at least this."""

    output_dir: OutputDir | None = None
    """Where results.jsonl and summary.json go (default: runs/eval/<env>-<time>)."""

    seed: int = 0
    """Seed of the built-in server's sampler."""

    model: ModelConfig = ModelConfig()
    """The model: a path for the built-in server, or the served model's name with base_url."""

    inference: InferenceConfig = InferenceConfig(port=0)
    """The built-in server started when no base_url is given."""

    sampling: SamplingConfig = SamplingConfig()
    """Sampling of every model turn."""


class RLConfig(BaseConfig):
    """`asyncrl rl`: inference, orchestrator and trainer together on this machine."""

    output_dir: OutputDir = Path("runs/default")
    """Run directory (config.toml, metrics.jsonl, report.png, rollouts/, weights/, logs/, ...)."""

    max_steps: int = Field(30, ge=1)
    """Optimizer steps (one batch each)."""

    seed: int = 0
    """Seed of the task order, the sampler and the trainer."""

    resume: bool = False
    """Continue a stopped run in output_dir: the trainer from its latest checkpoint, the orchestrator
    from its last batch."""

    model: ModelConfig = ModelConfig()
    """The starting model."""

    inference: InferenceConfig = InferenceConfig(num_threads=1)
    """The inference server (one, on this machine)."""

    orchestrator: OrchestratorConfig = OrchestratorConfig()
    """The orchestrator (its client.base_urls are set to the local server)."""

    trainer: TrainerConfig = TrainerConfig(num_threads=1)
    """The trainer."""


class InferenceServerConfig(BaseConfig):
    """`asyncrl inference`: the inference server alone."""

    seed: int = 0
    """Seed of the sampler for requests that do not give their own."""

    model: ModelConfig = ModelConfig()
    """The served model."""

    inference: InferenceConfig = InferenceConfig()
    """The server and its engine."""


# TOPLOC: proofs that rollouts came from the claimed model (asyncrl.toploc).


class ToplocConfig(BaseConfig):
    chunk_size: int = Field(32, ge=1)
    """Generated tokens covered by one proof."""

    top_k: int = Field(128, ge=1)
    """Last-hidden-state values (largest magnitudes) one proof commits to; at most the hidden size."""

    max_exp_mismatches: int = Field(38, ge=0)
    """A chunk fails when more of its top-k values than this differ in sign or exponent from the
    recomputed ones (the paper's threshold: at least 90 of 128 must match)."""

    max_mant_err_mean: float = Field(10.0, ge=0)
    """A chunk fails when the mean difference of the bfloat16 mantissas, where exponents match, exceeds
    this (in units of the mantissa's last bit)."""

    max_mant_err_median: float = Field(8.0, ge=0)
    """A chunk fails when the median mantissa difference exceeds this."""

    max_sampling_z: float = Field(5.0, gt=0)
    """A rollout fails when its tokens' mid-ranks in the claimed sampling distributions stray from uniform
    by more than this many standard deviations (sampled at another temperature or top_p than claimed)."""

    min_token_tail: float = Field(1e-9, ge=0, lt=1)
    """A rollout fails when one of its tokens is so unlikely at the claimed temperature that the tokens at
    most as likely as it hold less than this much probability: an honest sampler draws such a token with
    probability below this (divided by top_p), per token."""

    top_p_slack: float = Field(0.02, ge=0)
    """A token is outside the claimed nucleus when the tokens more likely than it hold more mass than top_p
    plus this (which absorbs precision differences between generator and verifier)."""

    greedy_slack: float = Field(0.05, ge=0)
    """At temperature 0, a token fails when its logprob is below the most likely token's by more than this
    (nats), which absorbs near-ties that another precision may order differently."""
