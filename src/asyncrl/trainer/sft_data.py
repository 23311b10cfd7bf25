"""SFT data: JSONL records of `prompt`/`completion` text or chat `messages`, tokenized with a loss mask
that covers only what the model should learn to write (the completion, or the assistant turns)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from asyncrl.errors import UserError
from asyncrl.transport.batches import Sample


class SFTDataError(UserError):
    """The SFT data file is missing or a line of it is malformed; the message names the line."""


def read_records(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        raise SFTDataError(f"SFT data file {path} does not exist")
    records = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise SFTDataError(f"{path}:{number}: not valid JSON ({e.msg})") from None
            _check(record, path, number)
            records.append(record)
    if not records:
        raise SFTDataError(f"{path} holds no records")
    return records


def _check(record: Any, path: Path, number: int) -> None:
    where = f"{path}:{number}"
    if not isinstance(record, dict):
        raise SFTDataError(f"{where}: each line must be a JSON object")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise SFTDataError(f"{where}: messages must be a list of {{'role': str, 'content': str}}")
        if not any(m["role"] == "assistant" for m in messages):
            raise SFTDataError(f"{where}: messages have no assistant turn to learn from")
    elif not (isinstance(record.get("prompt"), str) and isinstance(record.get("completion"), str)):
        raise SFTDataError(f"{where}: a record needs 'messages', or 'prompt' and 'completion' strings")


def tokenize(record: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> Sample:
    """Token ids of a record, with the loss mask on completion/assistant tokens (their EOS included)."""
    if "messages" in record:
        ids, mask = _tokenize_chat(record["messages"], tokenizer)
    else:
        prompt = tokenizer.encode(record["prompt"], add_special_tokens=False)
        completion = tokenizer.encode(record["completion"], add_special_tokens=False)
        completion += [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        ids, mask = prompt + completion, [False] * len(prompt) + [True] * len(completion)
    n = len(ids)
    return Sample(ids, mask, [0.0] * n, [0.0] * n, policy_version=0)


def _render(messages: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, prompt: bool) -> list[int]:
    return list(
        tokenizer.apply_chat_template(
            messages, add_generation_prompt=prompt, tokenize=True, return_dict=False
        )
    )


def _tokenize_chat(messages: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase) -> tuple[list, list]:
    """Each assistant turn's tokens are those its rendering adds to the conversation before it (with the
    generation prompt), so the mask is exact whatever the template puts around turns."""
    ids = _render(messages, tokenizer, prompt=False)
    mask = [False] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_render(messages[:i], tokenizer, prompt=True)) if i else 0
        end = len(_render(messages[: i + 1], tokenizer, prompt=False))
        mask[start:end] = [True] * (end - start)
    return ids, mask


def split_train_eval(
    samples: list[Sample], eval_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """A seeded shuffle, then the last `eval_fraction` (at least one sample when the fraction is > 0)."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(samples) * eval_fraction)) if eval_fraction > 0 else 0
    if n_eval >= len(samples):
        raise SFTDataError(
            f"eval_fraction {eval_fraction} leaves no training data out of {len(samples)} records"
        )
    cut = len(samples) - n_eval
    return [samples[i] for i in order[:cut]], [samples[i] for i in order[cut:]]
