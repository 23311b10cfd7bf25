"""Config of the orchestrator (`asyncrl orchestrator`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from asyncrl.broadcast.config import WeightSourcesConfig
from asyncrl.config import ModelConfig, OutputDir, SamplingConfig
from asyncrl.config_loader import BaseConfig
from asyncrl.envs.sources import EnvSource
from asyncrl.envs.verifiers.config import VerifiersConfig
from asyncrl.toploc.config import ToplocConfig


class EnvSpec(BaseConfig):
    source: EnvSource = "builtin"
    """Where the environment comes from: "builtin" (asyncrl's own and plugins, `asyncrl env list`),
    "verifiers" (a verifiers v1 taskset, `name` its id) or "verifiers-legacy" (an environment of verifiers'
    2025 API, `vf.load_environment(name, **args)`, run under verifiers.legacy_python)."""

    name: str = "reverse-text"
    """Environment name (`asyncrl env list`), or the verifiers taskset or environment id."""

    args: dict[str, Any] = {}
    """Keyword arguments of its load_environment, or the taskset's config fields."""

    verifiers: VerifiersConfig = VerifiersConfig()
    """How verifiers episodes run (source = "verifiers" or "verifiers-legacy")."""


class EvalSpec(BaseConfig):
    """One eval during training (a `[[orchestrator.eval]]` table): an environment's first tasks, `k`
    rollouts each, on the policy the servers serve at step 0, every `interval` steps and after the last."""

    name: str | None = None
    """Label of its figures in metrics.jsonl (`<name>/avg@<k>`); default: the environment's name."""

    env: EnvSpec = EnvSpec()
    """The environment, in the shape of orchestrator.env (source, name, args, verifiers): any one, such as
    the training env with other args (reverse-text's held-out texts: args.split = "test")."""

    interval: int = Field(10, ge=1)
    """Steps between evals: one runs on the first policy (step 0), one when the servers serve the weights of
    each multiple of this, and one on the final weights."""

    num_examples: int = Field(64, ge=1)
    """Tasks evaluated: the first ones of the environment's dataset (all of them if it holds fewer)."""

    k: int = Field(1, ge=1)
    """Rollouts per task: avg@k is their mean reward, pass@1 .. pass@k the unbiased estimator."""

    pass_threshold: float = 1.0
    """A rollout passes, for pass@k, with at least this reward."""

    sampling: SamplingConfig = SamplingConfig()
    """Sampling of the eval's turns: its own, not orchestrator.sampling (temperature 0 and k = 1 measure
    greedy accuracy; pass@k for k > 1 needs a temperature above 0)."""

    max_concurrent: int = Field(32, ge=1)
    """Rollouts of this eval in flight at once (whole tasks: at least k), beside training's max_inflight on
    the same servers."""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str | None) -> str | None:
        if name is not None and (not name or any(c == "/" or c.isspace() for c in name)):
            raise ValueError(f"an eval's name labels metrics: give one without '/' or spaces, not {name!r}")
        return name

    @model_validator(mode="after")
    def _distinct_rollouts(self) -> EvalSpec:
        if self.k > 1 and self.sampling.temperature == 0:
            raise ValueError(
                f"k = {self.k} greedy rollouts (sampling.temperature 0) are one rollout {self.k} times: "
                "use k = 1, or a temperature above 0"
            )
        return self

    @property
    def label(self) -> str:
        """The name its figures go by."""
        return self.name or self.env.name


class ClientConfig(BaseConfig):
    base_urls: list[str] = Field(["http://127.0.0.1:8000"], min_length=1)
    """Inference servers (at least one); each rollout goes to the least loaded live one."""

    timeout_s: float = Field(600.0, gt=0)
    """Give up on one model request after this long."""

    retries: int = Field(2, ge=0)
    """Retries on one server before it is marked dead and its rollouts move to the others."""

    down_timeout_s: float = Field(300.0, gt=0)
    """With every server dead (or, at the start, none answering yet), how long to wait for one to answer
    /health (it is probed every second and given the current weights) before the orchestrator stops."""

    api_key: str | None = Field(None, exclude=True)  # a secret: never written to a run's files
    """Bearer token of the servers' routes (their inference.api_key); default: $ASYNCRL_API_KEY."""

    admin_key: str | None = Field(None, exclude=True)  # a secret: never written to a run's files
    """Bearer token of their /update_weights (their inference.admin_key); default: $ASYNCRL_ADMIN_KEY."""


class VerifyConfig(BaseConfig):
    fraction: float = Field(0.0, ge=0, le=1)
    """Share of rollouts whose TOPLOC proofs and sampling the orchestrator checks against the weights
    that generated them; a group with a failing rollout is dropped from its batch and counted. Turns
    generated across a weight update (two policies) cannot be checked and are counted as skipped."""

    rollouts_file: bool = False
    """Write every batch's turns, with their proofs, to toploc/step_<N>.jsonl (the rollouts file of
    `asyncrl toploc verify`, plus each line's `policy_version`)."""

    toploc: ToplocConfig = ToplocConfig()
    """The checks' thresholds (the proofs' chunk size and top-k are read from the proofs)."""

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

    record_routing: bool = False
    """MoE models: ask the servers for the experts that produced each generated token and write them into
    the batches, for the trainer's router replay (trainer.router_replay) and its routing-mismatch
    figures. The torch engine returns them; vLLM refuses the request."""

    mask_truncated: bool = False
    """Train on no token of a rollout cut off at sampling.max_tokens (it still counts in its group's
    mean reward)."""

    max_seq_len: int | None = Field(None, ge=1)
    """Drop groups with a rollout longer than this many tokens (prompt included), and count them."""

    difficulty_filter: bool = False
    """Online difficulty filtering: a group whose every reward is >= easy_reward or <= hard_reward is
    dropped, and its task is retired from later epochs."""

    refill: bool = True
    """Sample more groups in place of those the filters (drop_zero_advantage, max_seq_len,
    difficulty_filter) leave out, so every batch trains batch_size rollouts. false: a batch is the
    batch_size rollouts sampled for it and trains on those the filters keep (fewer, so cheaper; a batch
    that would keep none takes groups until one passes)."""

    easy_reward: float = 1.0
    """difficulty_filter: a task whose whole group reaches this is too easy."""

    hard_reward: float = 0.0
    """difficulty_filter: a task whose whole group stays at or below this is too hard."""

    samples_per_step: int = Field(4, ge=0)
    """Decoded rollouts written to samples/step_<N>.jsonl for people to read."""

    weights_timeout_s: float = Field(3600.0, gt=0)
    """Give up waiting for the trainer's weights after this long."""

    weights_update_attempts: int = Field(5, ge=1)
    """Tries of a weights version the inference servers refuse (a corrupt or mismatched weights dir, a fetch
    that failed), 1 s apart and doubling, each logged with the server's message; after the last the run
    stops with it."""

    weights: WeightSourcesConfig = WeightSourcesConfig()
    """Where the inference servers get new weights: the run dir, or shardcast sources (no shared disk)."""

    sampling: SamplingConfig = SamplingConfig()
    """Sampling of every model turn."""

    client: ClientConfig = ClientConfig()
    """The inference servers."""

    verify: VerifyConfig = VerifyConfig()
    """TOPLOC: checking that rollouts came from the claimed weights."""

    eval: list[EvalSpec] = []
    """Evals during training, each a `[[orchestrator.eval]]` table (name, env, interval, num_examples, k,
    pass_threshold, sampling, max_concurrent); their figures are metrics.jsonl lines of component "eval"."""

    @model_validator(mode="after")
    def _whole_groups(self) -> OrchestratorConfig:
        if self.batch_size % self.group_size:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of group_size {self.group_size}"
            )
        if self.env.source != "builtin" and self.verify.proofs:
            # verifiers' renderers client hands back tokens and logprobs only, not the server's proofs.
            raise ValueError(
                "TOPLOC checks (verify.fraction, verify.rollouts_file) need asyncrl's own environments: "
                "verifiers episodes do not carry the proofs"
            )
        if self.env.source != "builtin" and self.record_routing:
            raise ValueError(
                "orchestrator.record_routing needs asyncrl's own environments: verifiers episodes do not "
                "carry the server's routed experts"
            )
        return self

    @model_validator(mode="after")
    def _distinct_eval_labels(self) -> OrchestratorConfig:
        labels = [spec.label for spec in self.eval]
        if len(set(labels)) < len(labels):
            twice = sorted({label for label in labels if labels.count(label) > 1})
            raise ValueError(f"two evals are labelled {', '.join(twice)}: give each its own `name`")
        return self


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
