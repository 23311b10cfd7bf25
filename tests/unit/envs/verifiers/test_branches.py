"""A verifiers branch as asyncrl turns: the training sequences come back token for token."""

from __future__ import annotations

import pytest

from asyncrl.envs.environment import Rollout
from asyncrl.envs.verifiers.branches import branch_turns, sampled_spans

# system/user scaffold, a reply, a tool message, a second reply, the template's trailing newline
IDS = [1, 2, 3, 10, 11, 12, 4, 5, 20, 21, 6]
MASK = [False, False, False, True, True, True, False, False, True, True, False]
LOGPROBS = [0.0, 0.0, 0.0, -0.1, -0.2, -0.3, 0.0, 0.0, -0.4, -0.5, 0.0]
REPLIES = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]


def test_sampled_spans_are_the_runs_of_the_mask():
    assert sampled_spans(MASK) == [(3, 6), (8, 10)]
    assert sampled_spans([True, True]) == [(0, 2)]
    assert sampled_spans([False]) == []


def test_a_branch_becomes_one_turn_per_reply_whose_prompt_is_everything_before_it():
    turns = branch_turns(IDS, MASK, LOGPROBS, REPLIES, policy_version=3, truncated=False)
    assert [t.prompt_token_ids for t in turns] == [IDS[:3], IDS[:8]]
    assert [t.token_ids for t in turns] == [[10, 11, 12], [20, 21]]
    assert [t.logprobs for t in turns] == [[-0.1, -0.2, -0.3], [-0.4, -0.5]]
    assert [t.message for t in turns] == REPLIES
    assert {t.policy_version for t in turns} == {3}
    assert [t.finish_reason for t in turns] == ["stop", "stop"]


def test_the_turns_give_back_the_branch_as_one_training_sequence():
    rollout = Rollout(task={}, prompt=[], turns=branch_turns(IDS, MASK, LOGPROBS, REPLIES, 0, False))
    # The trailing unsampled newline is no one's prompt: nothing trains on it either way.
    assert rollout.token_samples() == [(IDS[:-1], MASK[:-1], LOGPROBS[:-1], None)]


def test_two_branches_are_two_sequences():
    other = [1, 2, 3, 30, 31]
    turns = branch_turns(IDS, MASK, LOGPROBS, REPLIES, 0, False)
    turns += branch_turns(other, [False] * 3 + [True] * 2, [0.0] * 3 + [-1.0, -2.0], REPLIES[:1], 0, False)
    samples = Rollout(task={}, prompt=[], turns=turns).token_samples()
    assert [sample.ids for sample in samples] == [IDS[:-1], other]


def test_a_truncated_branch_ends_with_a_length_finish():
    turns = branch_turns(IDS, MASK, LOGPROBS, REPLIES, 0, truncated=True)
    assert [t.finish_reason for t in turns] == ["stop", "length"]


def test_a_branch_whose_parts_differ_in_length_is_refused():
    with pytest.raises(ValueError, match="11 tokens, 10 mask entries"):
        branch_turns(IDS, MASK[:-1], LOGPROBS, REPLIES, 0, False)
