"""Which turns the orchestrator's verifier can check, and what it does with those it cannot."""

from __future__ import annotations

from pathlib import Path

from asyncrl.config import SamplingConfig
from asyncrl.envs.client import ChatTurn
from asyncrl.envs.environment import Rollout
from asyncrl.orchestrator.config import VerifyConfig
from asyncrl.orchestrator.groups import Group
from asyncrl.orchestrator.verification import RolloutVerifier, single_policy

TASK = {"prompt": [{"role": "user", "content": "hi"}], "answer": "x"}


def _group(versions: list[int]) -> Group:
    turn = ChatTurn({}, [1, 2], [3] * len(versions), [-0.1] * len(versions), min(versions), "stop", versions)
    return Group(0, [Rollout(TASK, TASK["prompt"], [], [turn])], [0.0], 0.1)


def test_a_turn_generated_across_a_weight_update_has_no_single_policy():
    assert single_policy(_group([2, 2, 2]).rollouts[0].turns[0]) == 2
    assert single_policy(_group([2, 3, 3]).rollouts[0].turns[0]) is None


def test_unverifiable_turns_are_skipped_and_their_groups_kept(tmp_path: Path, caplog):
    verifier = RolloutVerifier(tmp_path, "tiny", VerifyConfig(fraction=1.0), SamplingConfig(), seed=0)
    mixed, missing_weights = _group([0, 1]), _group([5, 5])  # no weights/step_5 in this run dir
    kept, figures = verifier.filter([mixed, missing_weights, _group([5, 5])])
    assert kept[:2] == [mixed, missing_weights]
    assert (figures.checked, figures.failed, figures.skipped, figures.dropped_groups) == (0, 0, 3, 0)
    verifier.filter([_group([5, 5])])
    missing = [r for r in caplog.records if "cannot verify rollouts of policy 5" in r.getMessage()]
    assert len(missing) == 1, "a missing version is reported once, not per turn"
