"""Config of the trackers a run logs to (`[monitor]` of `asyncrl rl`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from asyncrl.config_loader import BaseConfig


class MonitorConfig(BaseConfig):
    wandb: bool = False
    """Log the run to Weights & Biases (the `wandb` package, `pip install asyncrl[monitor]`): online when
    an API key is set ($WANDB_API_KEY or `wandb login`), offline otherwise, into `<output_dir>/wandb`
    (`wandb sync` uploads it later). $WANDB_MODE, when set, decides instead."""

    wandb_project: str = "asyncrl"
    """The W&B project."""

    wandb_entity: str | None = None
    """The W&B entity (user or team); default: the API key's."""

    wandb_name: str | None = None
    """The W&B run name; default: the name of the run dir."""

    tensorboard: bool = False
    """Write TensorBoard event files into `<output_dir>/tensorboard` (`tensorboard --logdir` on it): a
    local tracker that needs no account and no server while the run writes."""

    samples_every: int = Field(10, ge=1)
    """Steps between two sample tables (the rollouts of samples/step_<N>.jsonl: prompt, completion,
    reward, advantage, policy version, off-policy lag); each table adds rows, none replaces another."""

    @property
    def any(self) -> bool:
        """Whether any tracker is on."""
        return self.wandb or self.tensorboard


class MonitorCommandConfig(BaseConfig):
    """`asyncrl monitor RUN_DIR`: log a run started process by process (not by `asyncrl rl`, which does it
    itself) to the trackers."""

    run_dir: Path | None = None
    """The run's output_dir, shared with its orchestrator and trainer; also the first positional argument."""

    monitor: MonitorConfig = MonitorConfig()
    """The trackers."""
