"""Scores of several rollouts per task: pass@k, the unbiased estimator of Chen et al. (2021), averaged
over tasks. `asyncrl eval` and the orchestrator's evals during training both report it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k rollouts drawn from n, of which c pass, passes."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_rates(rewards_per_task: Iterable[Sequence[float]], k_max: int, threshold: float) -> dict[int, float]:
    """pass@k for k = 1..k_max, each the mean over the tasks with at least k rollouts (a rollout passes
    with a reward of at least `threshold`); a k that no task has enough rollouts for is left out."""
    counts = [(len(rewards), sum(r >= threshold for r in rewards)) for rewards in rewards_per_task]
    rates = {}
    for k in range(1, k_max + 1):
        scores = [pass_at_k(n, c, k) for n, c in counts if n >= k]
        if scores:
            rates[k] = sum(scores) / len(scores)
    return rates
