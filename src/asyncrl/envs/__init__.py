"""Environments: task datasets, rollout logic and rubrics."""
