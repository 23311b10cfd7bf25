from __future__ import annotations

import pytest

from asyncrl.orchestrator.advantages import group_advantages


def test_advantages_are_rewards_minus_the_group_mean():
    assert group_advantages([1.0, 0.0, 0.5, 0.5]) == pytest.approx([0.5, -0.5, 0.0, 0.0])


def test_normalised_advantages_divide_by_the_group_std_unless_it_is_zero():
    assert group_advantages([1.0, 0.0], normalize=True) == pytest.approx([1.0, -1.0])
    assert group_advantages([0.3, 0.3], normalize=True) == [0.0, 0.0]
