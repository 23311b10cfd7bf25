"""Config of `asyncrl rl`: the three processes' sections composed into one run."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from asyncrl.config import ModelConfig, OutputDir
from asyncrl.config_loader import BaseConfig
from asyncrl.inference.config import InferenceConfig
from asyncrl.monitor.config import MonitorConfig
from asyncrl.orchestrator.config import OrchestratorConfig
from asyncrl.trainer.config import TrainerConfig


class LauncherConfig(BaseConfig):
    restarts: int = Field(5, ge=0)
    """Times in a row a process of the run is restarted after it crashes (the trainer from its newest
    checkpoint, the orchestrator from its last batch, the inference server, given the newest weights by
    the orchestrator), the others running on; a process that then runs for 30 s starts its count
    again. 0: a crash stops the run. A process that crashes before the first step stops the run at once:
    a restart would repeat its error."""

    restart_backoff_s: float = Field(2.0, ge=0)
    """Wait before restarting a crashed process, doubled for each further crash in a row."""


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

    launcher: LauncherConfig = LauncherConfig()
    """How `asyncrl rl` supervises the three processes."""

    monitor: MonitorConfig = MonitorConfig()
    """Experiment trackers the run logs to besides metrics.jsonl (W&B, TensorBoard)."""

    @model_validator(mode="after")
    def _replay_has_routing(self) -> RLConfig:
        if self.trainer.router_replay and not self.orchestrator.record_routing:
            raise ValueError(
                "trainer.router_replay replays the routing inference recorded: set "
                "orchestrator.record_routing = true too"
            )
        return self

    @model_validator(mode="after")
    def _weights_kept_cover_the_off_policy_window(self) -> RLConfig:
        kept, window = self.trainer.retention.weights, self.orchestrator.max_off_policy_steps
        if kept and kept < window:
            raise ValueError(
                f"trainer.retention.weights {kept} keeps fewer weight versions than a batch may hold "
                f"(orchestrator.max_off_policy_steps {window}): set it to at least {window}, or 0 to keep all"
            )
        return self
