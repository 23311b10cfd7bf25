"""Parsers pull the answer out of a completion and say how well it kept to the expected format.

A completion is either text or a list of chat messages; parsers read the last assistant message.
"""

from __future__ import annotations

import re
from typing import Any

Completion = str | list[dict[str, Any]]


def last_assistant_text(completion: Completion) -> str:
    if isinstance(completion, str):
        return completion
    for message in reversed(completion):
        if message.get("role") == "assistant":
            return message.get("content") or ""
    return ""


class Parser:
    """The whole (stripped) text is the answer."""

    def parse_answer(self, completion: Completion) -> str | None:
        text = last_assistant_text(completion).strip()
        return text or None

    def format_reward(self, completion: Completion) -> float:
        """1.0 when the completion has an answer at all."""
        return float(self.parse_answer(completion) is not None)


class ThinkParser(Parser):
    """`<think>reasoning</think>` then the answer; the answer is what follows the last `</think>`."""

    OPEN, CLOSE = "<think>", "</think>"

    def parse_answer(self, completion: Completion) -> str | None:
        text = last_assistant_text(completion)
        if self.CLOSE not in text:
            return None
        answer = text.rsplit(self.CLOSE, 1)[1].strip()
        return answer or None

    def format_reward(self, completion: Completion) -> float:
        """1.0 for exactly one think block at the start followed by a non-empty answer."""
        text = last_assistant_text(completion).lstrip()
        well_formed = (
            text.startswith(self.OPEN)
            and text.count(self.OPEN) == 1
            and text.count(self.CLOSE) == 1
            and self.parse_answer(completion) is not None
        )
        return float(well_formed)


class XMLParser(Parser):
    """Named fields as `<field>value</field>`; the answer is the `answer_field`."""

    def __init__(self, fields: list[str], answer_field: str = "answer") -> None:
        if answer_field not in fields:
            raise ValueError(f"answer_field {answer_field!r} must be one of the fields {fields}")
        self.fields = fields
        self.answer_field = answer_field

    def parse(self, completion: Completion) -> dict[str, str | None]:
        """Each field's last complete occurrence (None when it never closes)."""
        text = last_assistant_text(completion)
        found: dict[str, str | None] = {}
        for field in self.fields:
            matches = re.findall(rf"<{field}>(.*?)</{field}>", text, flags=re.DOTALL)
            found[field] = matches[-1].strip() if matches else None
        return found

    def parse_answer(self, completion: Completion) -> str | None:
        return self.parse(completion)[self.answer_field] or None

    def format_reward(self, completion: Completion) -> float:
        """The fraction of fields present exactly once and closed."""
        text = last_assistant_text(completion)
        good = sum(text.count(f"<{f}>") == 1 and text.count(f"</{f}>") == 1 for f in self.fields)
        return good / len(self.fields)


class BoxedParser(Parser):
    r"""The content of the last `\boxed{...}`, braces balanced."""

    def boxed(self, completion: Completion) -> list[str]:
        text = last_assistant_text(completion)
        contents = []
        start = text.find("\\boxed{")
        while start >= 0:
            depth, i = 1, start + len("\\boxed{")
            while i < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            if depth == 0:
                contents.append(text[start + len("\\boxed{") : i - 1].strip())
            start = text.find("\\boxed{", i if depth == 0 else start + 1)
        return contents

    def parse_answer(self, completion: Completion) -> str | None:
        found = self.boxed(completion)
        return found[-1] if found else None

    def format_reward(self, completion: Completion) -> float:
        """1.0 for exactly one complete box."""
        return float(len(self.boxed(completion)) == 1)


PARSERS: dict[str, type[Parser]] = {"plain": Parser, "think": ThinkParser, "boxed": BoxedParser}
