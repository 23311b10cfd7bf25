from __future__ import annotations

import asyncio

import pytest

from asyncrl.envs.parsers import Parser
from asyncrl.envs.reverse_text import lcs_ratio
from asyncrl.envs.reverse_text_tasks import lcs_length
from asyncrl.envs.rubric import Rubric, RubricError


def exact(completion, answer, parser) -> float:
    return float(parser.parse_answer(completion) == answer)


async def length_bonus(completion) -> float:
    await asyncio.sleep(0)
    return min(1.0, len(completion) / 10)


def uses_everything(**kwargs) -> bool:
    return set(kwargs) == {"prompt", "completion", "answer", "state", "task", "parser"}


def test_weighted_sum_with_each_function_kept_as_a_metric():
    rubric = Rubric([exact, length_bonus, uses_everything], weights=[1.0, 0.5, 2.0])
    score = asyncio.run(rubric.score("prompt", "abcde", answer="abcde"))
    assert score.metrics == {"exact": 1.0, "length_bonus": 0.5, "uses_everything": 1.0}
    assert score.reward == pytest.approx(1.0 + 0.25 + 2.0)


def test_a_function_asking_for_an_unknown_input_is_refused_up_front():
    def wants_labels(completion, labels) -> float:
        return 0.0

    with pytest.raises(RubricError, match="labels"):
        Rubric([wants_labels])


def test_weights_must_match_functions_and_rewards_must_be_numbers():
    with pytest.raises(RubricError):
        Rubric([exact], weights=[1.0, 2.0])

    def text_reward(completion):
        return "good"

    with pytest.raises(RubricError, match="not a number"):
        asyncio.run(Rubric([text_reward]).score("p", "c"))


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("olleh", "olleh", 1.0),
        ("", "", 1.0),
        ("xyz", "abc", 0.0),
        ("olle", "olleh", 2 * 4 / 9),
        ("abc", "acb", 2 * 2 / 6),
    ],
)
def test_lcs_ratio(prediction, answer, expected):
    assert lcs_ratio(prediction, answer, Parser()) == pytest.approx(expected)


def test_lcs_length():
    assert lcs_length("ABCBDAB", "BDCABA") == 4
