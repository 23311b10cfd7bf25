"""The rollouts file: JSON lines, one generated sequence each, with what verifying it needs.

    {"prompt_token_ids": [...], "token_ids": [...], "toploc_proofs": ["<base64>", ...],
     "temperature": 1.0, "top_p": 1.0, "max_tokens": 128, "finish_reason": "stop"}

Other keys (ids, rewards, text) are allowed and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from asyncrl.toploc.errors import RolloutsFileError

REQUIRED = "prompt_token_ids, token_ids, toploc_proofs, temperature, top_p, max_tokens, finish_reason"


class Rollout(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    prompt_token_ids: list[int] = Field(min_length=1)
    token_ids: list[int] = Field(min_length=1)
    """The generated tokens, as sampled (stop strings not cut)."""
    toploc_proofs: list[str]
    """Base64 proofs, one per toploc.chunk_size generated tokens."""
    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    max_tokens: int = Field(ge=1)
    finish_reason: str
    """"stop" (EOS or a stop string), "length", or what the server answered otherwise."""
    stop: list[str] = []
    """The request's stop strings, when it had any: a sequence may only end on one if it is listed."""


def read_rollouts(path: Path) -> list[tuple[int, Rollout]]:
    """Every rollout of the file with its line number; every malformed line is reported, by number, in
    one error."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise RolloutsFileError(f"cannot read the rollouts file {path}: {e.strerror or e}") from None
    rollouts, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rollouts.append((number, Rollout.model_validate_json(line)))
        except ValidationError as e:
            problems.append(f"line {number}: {_first_error(e)}")
    if problems:
        shown = "\n  ".join(problems[:20]) + (
            f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        )
        raise RolloutsFileError(
            f"{path} has {len(problems)} malformed line(s):\n  {shown}\n"
            f"each line must be a JSON object with {REQUIRED}"
        )
    if not rollouts:
        raise RolloutsFileError(f"{path} holds no rollouts; write one JSON object per line with {REQUIRED}")
    return rollouts


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        return f"not valid JSON ({first['ctx']['error']})"
    if first["type"] == "model_type":
        return "not a JSON object"
    field = ".".join(str(part) for part in first["loc"])
    return f"{field}: {first['msg']}" if field else first["msg"]


def write_rollouts(path: Path, rollouts: Iterable[Rollout]) -> None:
    with open(path, "w") as f:
        for rollout in rollouts:
            f.write(json.dumps(rollout.model_dump()) + "\n")
