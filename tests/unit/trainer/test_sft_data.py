from __future__ import annotations

import pytest

from asyncrl.models import load_tokenizer
from asyncrl.trainer.sft_data import SFTDataError, read_records, tokenize


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


def test_prompt_completion_masks_only_the_completion_and_its_eos(tokenizer):
    sample = tokenize({"prompt": "abc", "completion": "xy"}, tokenizer)
    assert sample.input_ids == [*b"abc", *b"xy", tokenizer.eos_token_id]
    assert sample.loss_mask == [False] * 3 + [True] * 3


def test_chat_masks_exactly_the_assistant_turns(tokenizer):
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "ok"},
    ]
    sample = tokenize({"messages": messages}, tokenizer)
    trained = tokenizer.decode([t for t, m in zip(sample.input_ids, sample.loss_mask, strict=True) if m])
    assert trained == "yo<|im_end|>\nok<|im_end|>\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"prompt": "a"}', "'prompt' and 'completion'"),
        ('{"messages": [{"role": "user"}]}', "list of"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "no assistant turn"),
    ],
)
def test_malformed_lines_name_their_line(tmp_path, line, message):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n\n' + line + "\n")
    with pytest.raises(SFTDataError, match=rf"data.jsonl:3: .*{message}"):
        read_records(path)
