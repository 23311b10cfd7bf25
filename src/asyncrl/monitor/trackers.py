"""The trackers: each takes metrics lines and sample tables, and keeps them in its own store.

Metrics are logged per component (`trainer/loss`, `orchestrator/reward_mean`, `eval/<name>/avg@k`), each
component against its own step (`<component>/step`): the orchestrator runs ahead of the trainer, so their
lines for a step arrive at different times and neither can share one step counter. Every line's `time`
and `elapsed_s` go along.
"""

from __future__ import annotations

import abc
import json
import netrc
import os
import secrets
from pathlib import Path
from typing import Any

from asyncrl.monitor.config import MonitorConfig
from asyncrl.transport.layout import monitor_dir, read_config, tensorboard_dir

SAMPLE_COLUMNS = ["step", "prompt", "completion", "reward", "advantage", "policy_version", "off_policy_lag"]


def figures(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics line as `<component>/<name>` (strings and step-less events left out)."""
    component = record["component"]
    numbers = {k: v for k, v in record.items() if k != "component" and isinstance(v, int | float)}
    return {f"{component}/{name}": float(value) for name, value in numbers.items()}


def message_text(messages: list[dict[str, Any]] | str) -> str:
    """Chat messages as `role: content` lines, tool calls included, for a table cell."""
    if isinstance(messages, str):
        return messages
    lines = []
    for message in messages:
        text = message.get("content") or ""
        calls = [c.get("function", c) for c in message.get("tool_calls") or []]
        text += "".join(f"\n[tool call] {c.get('name')}({c.get('arguments')})" for c in calls)
        lines.append(f"{message.get('role', '?')}: {text}")
    return "\n".join(lines)


def sample_row(step: int, record: dict[str, Any]) -> list[Any]:
    version = record.get("policy_version", 0)
    return [step, message_text(record.get("prompt", [])), message_text(record.get("completion", [])),
            record.get("reward"), record.get("advantage"), version, step - version]  # fmt: skip


class Tracker(abc.ABC):
    """Where a run's metrics and samples go besides metrics.jsonl."""

    @abc.abstractmethod
    def log_metrics(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl line."""

    @abc.abstractmethod
    def log_samples(self, step: int, records: list[dict[str, Any]]) -> None:
        """The records of samples/step_<step>.jsonl, as rows added to the samples table."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush everything to disk (or the server)."""


def wandb_mode() -> str:
    """$WANDB_MODE when set; else online with an API key ($WANDB_API_KEY or `wandb login`'s netrc entry),
    offline without one (so a run on a box with no account still keeps its history)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    return "online" if logged_in else "offline"


class WandbTracker(Tracker):
    """A W&B run under `<run dir>/wandb`, one per asyncrl run: its id is kept in the run dir, so a resumed
    run logs on into the same W&B run."""

    def __init__(self, run_dir: Path, config: MonitorConfig) -> None:
        import wandb  # an optional dependency, imported only when asked for

        self._wandb = wandb
        id_file = monitor_dir(run_dir) / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(6)
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=config.wandb_project,
            entity=config.wandb_entity,
            name=config.wandb_name or Path(run_dir).resolve().name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config=read_config(run_dir),
            mode=wandb_mode(),
            # The launcher's own output stays its own: the progress bar, not W&B's console capture.
            settings=wandb.Settings(console="off", quiet=True, x_save_requirements=False),
        )
        self._components: set[str] = set()
        self._table: Any = None

    def log_metrics(self, record: dict[str, Any]) -> None:
        component = record["component"]
        if component not in self._components:
            self._components.add(component)
            self.run.define_metric(f"{component}/step")
            self.run.define_metric(f"{component}/*", step_metric=f"{component}/step")
        self.run.log(figures(record))

    def log_samples(self, step: int, records: list[dict[str, Any]]) -> None:
        if self._table is None:
            # INCREMENTAL: each log adds its rows to the one table, where earlier steps stay visible.
            self._table = self._wandb.Table(columns=SAMPLE_COLUMNS, log_mode="INCREMENTAL")
        for record in records:
            self._table.add_data(*sample_row(step, record))
        self.run.log({"samples": self._table, "samples/step": step})

    def close(self) -> None:
        self.run.finish()


class TensorBoardTracker(Tracker):
    """TensorBoard event files under `<run dir>/tensorboard`: scalars at each line's step and wall time,
    sample tables as text (markdown) at their step."""

    def __init__(self, run_dir: Path, config: MonitorConfig) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

        self.writer = SummaryWriter(log_dir=str(tensorboard_dir(run_dir)))
        self.writer.add_text("config", "```\n" + json.dumps(read_config(run_dir), indent=1) + "\n```", 0)

    def log_metrics(self, record: dict[str, Any]) -> None:
        step, wall = int(record["step"]), record.get("time")
        for name, value in figures(record).items():
            if not name.endswith(("/step", "/time")):
                self.writer.add_scalar(name, value, step, walltime=wall)

    def log_samples(self, step: int, records: list[dict[str, Any]]) -> None:
        def cell(value: Any) -> str:
            return str(value).replace("|", "\\|").replace("\n", "<br>")

        lines = ["| " + " | ".join(SAMPLE_COLUMNS) + " |", "|" + " --- |" * len(SAMPLE_COLUMNS)]
        lines += ["| " + " | ".join(cell(v) for v in sample_row(step, r)) + " |" for r in records]
        self.writer.add_text("samples", "\n".join(lines), step)

    def close(self) -> None:
        self.writer.close()
