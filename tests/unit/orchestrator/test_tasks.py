"""The task stream: seeded epochs, resuming, requeued and retired tasks."""

from __future__ import annotations

import pytest

from asyncrl.orchestrator.tasks import NoTasksLeftError, TaskStream


def test_task_stream_visits_every_task_once_per_epoch_and_resumes_from_its_cursor():
    stream = TaskStream(5, seed=1)
    first_epoch = [stream.next() for _ in range(5)]
    assert sorted(first_epoch) == list(range(5))
    second_epoch = [stream.next() for _ in range(5)]
    assert sorted(second_epoch) == list(range(5)) and second_epoch != first_epoch
    resumed = TaskStream(5, seed=1, cursor=3)
    assert [resumed.next() for _ in range(7)] == (first_epoch + second_epoch)[3:10]


def test_requeued_tasks_come_first_without_moving_the_cursor():
    plain = TaskStream(6, seed=2)
    order = [plain.next() for _ in range(6)]
    stream = TaskStream(6, seed=2, cursor=2, requeued=[order[0], order[1]])
    assert [stream.next() for _ in range(4)] == [order[0], order[1], order[2], order[3]]
    assert stream.cursor == 4


def test_retired_tasks_are_skipped_and_retiring_all_is_an_error():
    stream = TaskStream(4, seed=0, retired=[0, 1])
    assert sorted(stream.next() for _ in range(4)) == [2, 2, 3, 3]
    for index in (2, 3):
        stream.retire(index)
    with pytest.raises(NoTasksLeftError, match="retired every task"):
        stream.next()
