"""Group-relative advantages: each rollout's reward against its group's mean."""

from __future__ import annotations

import statistics


def group_advantages(rewards: list[float], normalize: bool = False) -> list[float]:
    """reward - mean(group); divided by the group's std when `normalize` (and the std is not 0)."""
    mean = statistics.fmean(rewards)
    advantages = [r - mean for r in rewards]
    if normalize and len(rewards) > 1:
        std = statistics.pstdev(rewards)
        if std > 0:
            advantages = [a / std for a in advantages]
    return advantages
