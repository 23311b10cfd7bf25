"""Config of the trainer (`asyncrl trainer`) and of SFT (`asyncrl sft`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from asyncrl.config import Device, ModelConfig, OutputDir
from asyncrl.config_loader import BaseConfig


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
    """AdamW for everything, or Muon for hidden matrices (each MoE expert's on its own) with AdamW for the
    rest: embeddings, head, norms, biases and MoE routers."""

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


class RetentionConfig(BaseConfig):
    weights: int = Field(4, ge=0)
    """Newest weight versions kept in weights/ (older ones are deleted after each step; 0 keeps every one).
    The orchestrator may still need max_off_policy_steps of them, so `asyncrl rl` refuses fewer."""

    rollouts: Literal["needed", "all"] = "needed"
    """"needed": a batch is deleted once the newest checkpoint covers it (a resume never trains it again);
    "all": every batch is kept, for reading them afterwards."""


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

    router_replay: bool = False
    """MoE models: route each sampled token's position to the experts inference chose for it (router
    replay), so the training forward computes what generated the token; needs orchestrator.record_routing.
    Off, the trainer routes itself, and still reports how often it disagrees when batches carry routing.
    Prompt positions are always routed by the trainer (they produced no sampled token)."""

    moe_balance_loss_coef: float = Field(0.0, ge=0)
    """MoE models: weight of the load-balancing loss (Switch Transformer's E * sum f_e P_e, mean over the
    MoE layers) added to the policy loss; 0: none."""

    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass to save memory."""

    retention: RetentionConfig = RetentionConfig()
    """What the run dir keeps of weights/ and rollouts/, so it stays bounded over a long run."""

    batch_timeout_s: float = Field(3600.0, gt=0)
    """Give up waiting for a rollout batch after this long."""

    num_threads: int = Field(0, ge=0)
    """Torch CPU threads per rank (0: torch's default)."""

    device: Device = "auto"
    """Where each rank trains: "auto" is CUDA device LOCAL_RANK when torch sees one, else the CPU."""


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


class TrainerProcessConfig(BaseConfig):
    """`asyncrl trainer`: the RL trainer alone (under torchrun for several ranks)."""

    output_dir: OutputDir = Path("runs/default")
    """Run directory: rollouts are read from it, weights, checkpoints and metrics written to it."""

    max_steps: int = Field(30, ge=1)
    """Optimizer steps to run."""

    seed: int = 0
    """Seed of torch's RNG."""

    resume: str | None = None
    """Resume from `latest` or a step number's checkpoint in output_dir/checkpoints; `if-any`: from the
    newest one if there is one, else from the start (a crashed trainer restarted by `asyncrl rl`)."""

    model: ModelConfig = ModelConfig()
    """The model trained (its initial weights)."""

    trainer: TrainerConfig = TrainerConfig()
    """The trainer."""


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


class ExportConfig(BaseConfig):
    """`asyncrl export ADAPTER --out DIR`: merge a LoRA adapter (a run's weights/step_N) into its base."""

    adapter: str | None = None
    """The adapter dir (adapter_config.json + adapter_model.safetensors, as a LoRA run publishes in
    weights/step_N); also the first positional argument."""

    base: str | None = None
    """The base model (a local HF dir or a built-in name); default: the one the adapter's config names."""

    out: OutputDir | None = None
    """Where the merged model dir goes (config.json, model.safetensors, tokenizer)."""
