"""A rollout's routed experts laid along its training sequences: on each turn's generated tokens, -1 on
everything else, whatever the turns' shapes."""

from __future__ import annotations

import pytest
import torch

from asyncrl.envs.client import ChatTurn, ModelRequestError, _turn
from asyncrl.envs.environment import Rollout
from asyncrl.inference.api.protocol import CompletionChoice
from asyncrl.moe import NOT_REPLAYED, encode_routed_experts


def _turn_of(prompt: list[int], tokens: list[int], routed: torch.Tensor | None) -> ChatTurn:
    return ChatTurn({}, prompt, tokens, [-0.5] * len(tokens), 0, "stop", routed_experts=routed)


def _experts(n: int, first: int) -> torch.Tensor:
    return torch.arange(first, first + 2 * n, dtype=torch.int16).remainder(8).view(n, 1, 2)


def test_a_multi_turn_rollout_carries_each_turns_routing_on_its_own_tokens():
    first = _turn_of([1, 2, 3], [10, 11], _experts(2, 0))
    # The environment answers (tokens 20, 21), then the model again: the second prompt extends the first.
    second = _turn_of([1, 2, 3, 10, 11, 20, 21], [12, 13, 14], _experts(3, 4))
    [sample] = Rollout(task={}, prompt=[], turns=[first, second]).token_samples()
    assert sample.ids == [1, 2, 3, 10, 11, 20, 21, 12, 13, 14]
    routed = sample.routed_experts
    recorded = routed[:, 0, 0] != NOT_REPLAYED
    assert recorded.tolist() == sample.mask
    assert torch.equal(routed[3:5], _experts(2, 0)) and torch.equal(routed[7:], _experts(3, 4))


def test_a_turn_without_routing_leaves_its_tokens_unrecorded_and_no_routing_gives_none():
    first = _turn_of([1, 2], [10], _experts(1, 0))
    second = _turn_of([1, 2, 10, 20], [12, 13], None)
    [sample] = Rollout(task={}, prompt=[], turns=[first, second]).token_samples()
    assert (sample.routed_experts[:, 0, 0] != NOT_REPLAYED).tolist() == [
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    plain = Rollout(task={}, prompt=[], turns=[_turn_of([1, 2], [10], None)]).token_samples()
    assert plain[0].routed_experts is None


def test_a_turn_that_restarts_the_history_starts_a_sample_with_its_own_routing():
    first = _turn_of([1, 2], [10], _experts(1, 0))
    other = _turn_of([5, 6, 7], [11, 12], _experts(2, 2))
    samples = Rollout(task={}, prompt=[], turns=[first, other]).token_samples()
    assert [s.ids for s in samples] == [[1, 2, 10], [5, 6, 7, 11, 12]]
    assert torch.equal(samples[1].routed_experts[3:], _experts(2, 2))


def _choice(tokens: list[int], wire: dict) -> CompletionChoice:
    return CompletionChoice(token_ids=tokens, routed_experts=wire)


def test_the_client_refuses_routing_that_does_not_fit_its_choice():
    good = encode_routed_experts(_experts(3, 0))
    assert torch.equal(_turn(_choice([1, 2, 3], good), {}, [0], []).routed_experts, _experts(3, 0))
    with pytest.raises(ModelRequestError, match="routed 3 tokens of a 2-token choice"):
        _turn(_choice([1, 2], good), {}, [0], [])
    with pytest.raises(ModelRequestError, match="routed_experts"):
        _turn(_choice([1, 2], {"dtype": "uint8", "shape": [2, 1], "data": "AAAA"}), {}, [0], [])
