"""TOPLOC in the orchestrator: check a share of the rollouts against the weights that generated them,
drop the groups of those that fail, and optionally write each batch's proofs to a rollouts file.

A turn's proofs can only be checked against one set of weights: turns generated across a weight
update are counted as skipped. Weights of version N are the trainer's `weights/step_N/` (0: the
initial model), which stay in the run dir for the run's life.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from asyncrl.config import SamplingConfig
from asyncrl.envs.client import ChatTurn
from asyncrl.errors import UserError
from asyncrl.orchestrator.config import VerifyConfig
from asyncrl.orchestrator.groups import Group
from asyncrl.toploc.rollouts import Rollout
from asyncrl.transport.layout import STABLE, proofs_file, weights_dir, write_file_atomically

if TYPE_CHECKING:
    from asyncrl.toploc.verify import ReferenceModel

log = logging.getLogger("asyncrl.orchestrator")
MODELS_KEPT = 2
"""Reference models held at once: a batch mixes at most a few adjacent policies."""


class VerificationError(UserError):
    """No rollout of a batch came from the claimed weights: the inference servers cannot be trusted."""


@dataclass(frozen=True)
class VerifyFigures:
    checked: int = 0
    """Turns verified."""
    failed: int = 0
    """Turns whose proofs or sampling did not match the claimed weights."""
    skipped: int = 0
    """Turns picked but not checkable: generated across a weight update, or their weights are gone."""
    dropped_groups: int = 0


def proof_rollout(turn: ChatTurn, sampling: SamplingConfig) -> Rollout | None:
    """The turn as a rollouts-file record, or None when it generated nothing."""
    if not turn.token_ids or not turn.prompt_token_ids:
        return None
    return Rollout(
        prompt_token_ids=turn.prompt_token_ids,
        token_ids=turn.token_ids,
        toploc_proofs=turn.toploc_proofs,
        temperature=float(sampling.temperature),
        top_p=float(sampling.top_p),
        max_tokens=sampling.max_tokens,
        finish_reason=turn.finish_reason,
    )


def single_policy(turn: ChatTurn) -> int | None:
    """The one policy version behind every token of the turn, or None when weights changed mid-turn."""
    versions = set(turn.token_policy_versions) or {turn.policy_version}
    return versions.pop() if len(versions) == 1 else None


def write_proofs_file(run_dir: Path, step: int, groups: list[Group], sampling: SamplingConfig) -> Path:
    """toploc/step_<N>.jsonl: every turn of the batch as a rollouts-file line plus its `policy_version`
    (null when generated across a weight update), written atomically."""
    lines = []
    for group in groups:
        for rollout in group.rollouts:
            for turn in rollout.turns:
                record = proof_rollout(turn, sampling)
                if record is not None:
                    line = {**record.model_dump(), "policy_version": single_policy(turn)}
                    lines.append(json.dumps(line) + "\n")
    return write_file_atomically(proofs_file(run_dir, step), "".join(lines))


class RolloutVerifier:
    """Verifies a random `fraction` of each batch's rollouts, on the orchestrator's CPU."""

    def __init__(
        self, run_dir: Path, base_model: str, config: VerifyConfig, sampling: SamplingConfig, seed: int
    ) -> None:
        self.run_dir, self.base_model, self.config, self.sampling = run_dir, base_model, config, sampling
        self.toploc = config.toploc
        torch.set_num_threads(1)  # the orchestrator shares the CPU with inference and the trainer
        self.rng = random.Random(seed)
        self._models: dict[int, ReferenceModel] = {}
        self._missing: set[int] = set()
        """Versions whose weights were gone (deleted by the trainer's keep limit): they do not return."""

    def filter(self, groups: list[Group]) -> tuple[list[Group], VerifyFigures]:
        """The groups none of whose checked rollouts failed, and what the checks found."""
        skipped, failed = 0, 0
        picked: dict[int, list[tuple[int, Rollout]]] = {}
        for index, group in enumerate(groups):
            for rollout in group.rollouts:
                if self.rng.random() >= self.config.fraction:
                    continue
                for turn in rollout.turns:
                    record, version = proof_rollout(turn, self.sampling), single_policy(turn)
                    if record is None:
                        continue
                    if version is None or self._reference(version) is None:
                        skipped += 1
                        continue
                    picked.setdefault(version, []).append((index, record))
        failed_groups: set[int] = set()
        checked = sum(map(len, picked.values()))
        from asyncrl.toploc.verify import verify_rollouts  # loaded with the first reference model

        with torch.inference_mode():
            for version, records in picked.items():
                reference = self._reference(version)
                assert reference is not None
                verdicts = verify_rollouts(reference, [r for _, r in records], self.toploc)
                for (index, _), verdict in zip(records, verdicts, strict=True):
                    if not verdict.passed:
                        failed += 1
                        failed_groups.add(index)
                        log.warning("rollout of task %d failed verification: %s", groups[index].task_index,
                                    "; ".join(verdict.reasons))  # fmt: skip
        kept = [g for i, g in enumerate(groups) if i not in failed_groups]
        if groups and not kept:
            raise VerificationError(
                f"every group of the batch had a rollout that failed TOPLOC verification ({failed} "
                "turns): the inference servers do not serve the weights they claim; see the warnings above"
            )
        return kept, VerifyFigures(checked, failed, skipped, len(failed_groups))

    def _reference(self, version: int) -> ReferenceModel | None:
        """The weights of `version`, loaded once; None when they are not on disk (any more)."""
        if version in self._models or version in self._missing:
            return self._models.get(version)
        path = self.base_model if version == 0 else str(weights_dir(self.run_dir, version))
        if version and not (Path(path) / STABLE).exists():
            log.warning("cannot verify rollouts of policy %d: %s is missing", version, path)
            self._missing.add(version)
            return None
        # transformers' model code, imported only by orchestrators that verify: the others start faster.
        from asyncrl.toploc.verify import ReferenceModel

        if len(self._models) >= MODELS_KEPT:
            del self._models[min(self._models)]
        self._models[version] = ReferenceModel.load(path)
        return self._models[version]
