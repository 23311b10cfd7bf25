"""pass@k: the unbiased estimator per task, and its mean over tasks."""

from __future__ import annotations

import pytest

from asyncrl.envs.scoring import pass_at_k, pass_rates


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(4, 0, 1, 0.0), (4, 4, 1, 1.0), (4, 1, 1, 0.25), (4, 1, 2, 0.5), (4, 2, 2, 1 - 1 / 6), (4, 3, 2, 1.0)],
)
def test_pass_at_k_is_the_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_rates_average_over_tasks_and_count_a_reward_at_the_threshold_as_passing():
    rates = pass_rates([[1.0, 0.0], [0.5, 0.5]], k_max=2, threshold=0.5)
    assert rates == {1: pytest.approx(0.75), 2: pytest.approx(1.0)}
    assert pass_rates([[1.0, 0.0], [0.5, 0.5]], k_max=2, threshold=1.0) == {1: 0.25, 2: 0.5}


def test_a_k_is_averaged_over_the_tasks_with_enough_rollouts_and_left_out_when_none_has():
    assert pass_rates([[1.0, 1.0], [0.0]], k_max=3, threshold=1.0) == {1: 0.5, 2: 1.0}
