from __future__ import annotations

import pytest

from asyncrl.evals.runner import summarize


def test_summary_averages_rewards_metrics_and_pass_at_k_per_example():
    records = [
        {"example": 0, "reward": 1.0, "metrics": {"m": 1.0}, "error": None},
        {"example": 0, "reward": 0.0, "metrics": {"m": 0.0}, "error": "the env raised"},
        {"example": 1, "reward": 0.5, "metrics": {"m": 0.5}, "error": None},
        {"example": 1, "reward": 0.5, "metrics": {"m": 0.5}, "error": None},
    ]
    summary = summarize(records, rollouts_per_example=2, threshold=1.0)
    assert summary["reward_mean"] == 0.5
    assert summary["metrics"] == {"m": 0.5}
    assert summary["pass_at_k"] == {"1": pytest.approx(0.25), "2": pytest.approx(0.5)}
    assert summary["errors"] == 1
