"""Typed configs: one pydantic model per section and per command, composed from TOML files plus
`--section.key value` overrides (see config_loader).

Every field carries its own docstring and its default; `--help` is generated from them, so the
pydantic field is the one source of defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

# ConfigError, format_help and load_config are re-exported: `asyncrl.config` is the public config API.
from asyncrl.config_loader import BaseConfig, ConfigError, format_help, load_config  # noqa: F401


def _not_a_file(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; give a directory (an existing one, or one to create)")
    return path


OutputDir = Annotated[Path, AfterValidator(_not_a_file)]
"""A run's or an eval's output directory."""

Device = Literal["auto", "cpu", "cuda"]
"""Where a process runs tensors: "auto" is CUDA when torch sees a GPU, else the CPU."""


class LoraConfig(BaseConfig):
    """A LoRA adapter trained in place of the model's weights (PEFT's LoraConfig semantics)."""

    rank: int = Field(16, ge=1)
    """r: the rank of each adapter's two matrices (A: rank x in, B: out x rank)."""

    alpha: float = Field(32.0, gt=0)
    """lora_alpha: the adapter's output is scaled by alpha / rank."""

    dropout: float = Field(0.0, ge=0, lt=1)
    """lora_dropout: dropout on the adapter's input while training (0 keeps the trainer's logprobs those
    inference computes; RL's importance ratios want that)."""

    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """The modules adapted: names (or name suffixes) of linear layers, e.g. ["q_proj", "v_proj"], or
    "all-linear" (every linear layer but the output head)."""


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
    """Weights and activations dtype of inference; the trainer's compute dtype (float32 or bfloat16: its
    master weights, gradient reduction and optimizer states stay float32)."""

    name: str | None = None
    """The name requests call the model by and servers serve it under; default: `path`. The commands set
    it to a built-in name (`tiny-reverse-text`) when they replace that name's `path` by its directory."""

    lora: LoraConfig | None = None
    """Train a LoRA adapter (`[model.lora]`, or any `--model.lora.KEY`) instead of every weight: the base
    stays frozen, and each step publishes a PEFT adapter dir that inference applies. Absent: full
    fine-tuning."""

    @property
    def served_name(self) -> str:
        return self.name or self.path


class SamplingConfig(BaseConfig):
    temperature: float = Field(1.0, ge=0)
    """Sampling temperature (0: greedy)."""

    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling mass."""

    max_tokens: int = Field(128, ge=1)
    """Most tokens one model turn may generate."""
