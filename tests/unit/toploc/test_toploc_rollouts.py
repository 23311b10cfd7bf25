"""The rollouts file: JSON lines; every malformed line is reported with its number."""

from __future__ import annotations

import json

import pytest

from asyncrl.toploc.errors import RolloutsFileError
from asyncrl.toploc.rollouts import Rollout, read_rollouts, write_rollouts

GOOD = {
    "prompt_token_ids": [1, 2],
    "token_ids": [3, 4],
    "toploc_proofs": ["AAAA"],
    "temperature": 1,
    "top_p": 0.9,
    "max_tokens": 8,
    "finish_reason": "stop",
}


def test_rollouts_round_trip_with_their_line_numbers(tmp_path):
    path = tmp_path / "rollouts.jsonl"
    rollouts = [Rollout(**GOOD), Rollout(**{**GOOD, "stop": ["</a>"], "finish_reason": "length"})]
    write_rollouts(path, rollouts)
    path.write_text(path.read_text().replace("\n", "\n\n", 1))  # a blank line is skipped, not an error
    assert read_rollouts(path) == [(1, rollouts[0]), (3, rollouts[1])]


def test_unknown_keys_are_ignored(tmp_path):
    path = tmp_path / "rollouts.jsonl"
    path.write_text(json.dumps({**GOOD, "reward": 1.0, "text": "hi"}) + "\n")
    assert read_rollouts(path) == [(1, Rollout(**GOOD))]


def test_every_malformed_line_is_reported_by_number(tmp_path):
    path = tmp_path / "rollouts.jsonl"
    lines = [
        json.dumps(GOOD),
        "{not json",
        "[1, 2]",
        json.dumps({**GOOD, "temperature": "hot"}),
        json.dumps({k: v for k, v in GOOD.items() if k != "max_tokens"}),
        json.dumps({**GOOD, "token_ids": []}),
        json.dumps({**GOOD, "prompt_token_ids": [1.5]}),
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RolloutsFileError) as error:
        read_rollouts(path)
    message = str(error.value)
    assert "6 malformed line(s)" in message
    assert "line 1:" not in message
    for number, words in [
        (2, "not valid JSON"),
        (3, "not a JSON object"),
        (4, "temperature"),
        (5, "max_tokens: Field required"),
        (6, "token_ids"),
        (7, "prompt_token_ids.0"),
    ]:
        assert f"line {number}: " in message and words in message.split(f"line {number}: ")[1].splitlines()[0]


def test_a_missing_or_empty_file_says_what_to_write(tmp_path):
    with pytest.raises(RolloutsFileError, match="cannot read"):
        read_rollouts(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(RolloutsFileError, match="holds no rollouts"):
        read_rollouts(tmp_path / "empty.jsonl")
