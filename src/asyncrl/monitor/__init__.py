"""Experiment trackers (W&B, TensorBoard) fed from a run dir: its metrics.jsonl and samples/ files.

One follower reads what the processes of a run write and hands it to every configured tracker, so a run
is one tracker run whatever the number of processes writing it (see service.py).
"""
