"""samples/step_<N>.jsonl: the decoded rollouts people (and the run viewer) read."""

from __future__ import annotations

import json

from asyncrl.envs.client import ChatTurn
from asyncrl.envs.environment import Rollout
from asyncrl.orchestrator.groups import Group
from asyncrl.orchestrator.loop import write_readable_samples
from asyncrl.transport.layout import samples_file


def test_readable_samples_carry_their_step_token_count_and_metrics_beside_the_messages(tmp_path):
    task = {"prompt": [{"role": "user", "content": "Reverse: ab"}], "answer": "ba"}
    b, a = {"role": "assistant", "content": "b"}, {"role": "assistant", "content": "a"}
    turns = [
        ChatTurn(b, [1, 2], [3, 4, 5], [-0.1] * 3, 2, "stop"),
        ChatTurn(a, [1, 2, 3, 4, 5], [6], [-0.2], 2, "stop"),
    ]
    rollout = Rollout(
        task, task["prompt"], [t.message for t in turns], turns, reward=0.5, metrics={"lcs": 0.5}
    )
    write_readable_samples(tmp_path, 7, [Group(3, [rollout], [0.25], 0.1)], count=4)

    (record,) = [json.loads(line) for line in samples_file(tmp_path, 7).read_text().splitlines()]
    assert record == {
        "step": 7, "task_index": 3, "prompt": task["prompt"], "completion": [b, a], "answer": "ba",
        "reward": 0.5, "advantage": 0.25, "policy_version": 2, "tokens": 4, "metrics": {"lcs": 0.5},
    }  # fmt: skip
