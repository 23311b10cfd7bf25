"""The built-in environments' rubrics on hand-made completions."""

from __future__ import annotations

import asyncio

import pytest

from asyncrl.envs.arithmetic import is_correct
from asyncrl.envs.calculator import calculate
from asyncrl.envs.registry import EnvironmentArgsError, EnvironmentNotFoundError, describe, load_environment


def _score(env, completion: str, answer: str):
    message = [{"role": "assistant", "content": completion}]
    return asyncio.run(env.rubric.score([], message, answer))


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("0.5", "1/2", True),
        ("\\frac{1}{2}", "0.5", True),
        ("3", "4", False),
        (None, "4", False),
        ("12", "12", True),
    ],
)
def test_answers_are_checked_by_math_verify(prediction, answer, expected):
    assert is_correct(prediction, answer) is expected


def test_arithmetic_rewards_correctness_and_the_box_format():
    env = load_environment("arithmetic", num_examples=5)
    assert _score(env, "so \\boxed{7}", "7").reward == pytest.approx(1.1)
    assert _score(env, "it is 7", "7").metrics == {"correct_answer": 0.0, "boxed_format": 0.0}
    assert _score(env, "\\boxed{8}", "7").reward == pytest.approx(0.1)
    assert all(t["answer"].lstrip("-").isdigit() for t in env.dataset)


def test_reverse_text_rewards_the_lcs_ratio():
    env = load_environment("reverse-text", num_examples=3, min_chars=5, max_chars=5)
    task = env.dataset[0]
    assert _score(env, task["answer"], task["answer"]).reward == 1.0
    assert 0.0 < _score(env, task["answer"][:3], task["answer"]).reward < 1.0


def test_calculator_tool_evaluates_only_arithmetic():
    assert calculate("(12 + 3) * 4") == "60"
    assert calculate("7 / 2") == "3.5"
    assert calculate("-2 * -3") == "6"
    for hostile in ("__import__('os').system('true')", "2 ** 99999999", "[1, 2]", "True + 1"):
        with pytest.raises((ValueError, SyntaxError)):
            calculate(hostile)


def test_registry_lists_built_ins_and_explains_mistakes():
    assert describe("calculator")["dataset_size"] == 500
    with pytest.raises(EnvironmentNotFoundError, match="arithmetic, calculator, code, reverse-text"):
        load_environment("nope")
    with pytest.raises(EnvironmentArgsError, match="max_value"):
        load_environment("arithmetic", difficulty=3)
    with pytest.raises(EnvironmentArgsError, match="max_value must be at least 2"):
        load_environment("arithmetic", max_value=1)


def test_reverse_text_can_add_latency_per_rollout():
    from asyncrl.envs.reverse_text import DelayedReverseText

    assert isinstance(load_environment("reverse-text", num_examples=2, latency_s=0.5), DelayedReverseText)
    assert not isinstance(load_environment("reverse-text", num_examples=2), DelayedReverseText)


def test_reverse_texts_test_split_holds_out_every_text_of_the_train_split_with_the_same_args():
    # Texts of 2 to 4 characters: two independent streams of 300 would share some.
    args = {"num_examples": 300, "min_chars": 2, "max_chars": 4}
    train = load_environment("reverse-text", **args)
    test = load_environment("reverse-text", split="test", **args)
    assert len(test.dataset) == 300
    assert not {t["answer"] for t in train.dataset} & {t["answer"] for t in test.dataset}
    assert test.dataset == load_environment("reverse-text", split="test", **args).dataset
    assert train.dataset == load_environment("reverse-text", split="train", **args).dataset


def test_reverse_text_refuses_a_test_split_the_train_split_leaves_nothing_for():
    with pytest.raises(EnvironmentArgsError, match="too few to hold out"):
        load_environment("reverse-text", num_examples=200, min_chars=1, max_chars=1, split="test")
    with pytest.raises(EnvironmentArgsError, match='split is "train" or "test"'):
        load_environment("reverse-text", split="validation")
