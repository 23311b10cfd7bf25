"""Environments written with Prime Intellect's verifiers: v1 tasksets, each episode run by env-server
worker processes (so a crashing or hanging environment never takes the orchestrator down), its trace
branches turned into asyncrl rollouts."""
