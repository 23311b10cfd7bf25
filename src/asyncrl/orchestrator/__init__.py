"""The orchestrator process: rollouts from inference servers into training batches, bounded staleness."""
