from __future__ import annotations

import pytest

from asyncrl.orchestrator.advantages import group_advantages
from asyncrl.orchestrator.loop import TaskStream


def test_advantages_are_rewards_minus_the_group_mean():
    assert group_advantages([1.0, 0.0, 0.5, 0.5]) == pytest.approx([0.5, -0.5, 0.0, 0.0])


def test_normalised_advantages_divide_by_the_group_std_unless_it_is_zero():
    assert group_advantages([1.0, 0.0], normalize=True) == pytest.approx([1.0, -1.0])
    assert group_advantages([0.3, 0.3], normalize=True) == [0.0, 0.0]


def test_task_stream_visits_every_task_once_per_epoch_and_resumes_from_its_cursor():
    stream = TaskStream(5, seed=1)
    first_epoch = [stream.next() for _ in range(5)]
    assert sorted(first_epoch) == list(range(5))
    second_epoch = [stream.next() for _ in range(5)]
    assert sorted(second_epoch) == list(range(5)) and second_epoch != first_epoch
    resumed = TaskStream(5, seed=1, cursor=3)
    assert [resumed.next() for _ in range(7)] == (first_epoch + second_epoch)[3:10]
