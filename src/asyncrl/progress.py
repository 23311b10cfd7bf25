"""Progress of long work: a bar redrawn in place on a terminal, a plain line now and then anywhere else.

The processes of `asyncrl rl` write to log files, where a redrawn bar leaves a carriage return per
redraw (thousands of lines' worth on one line); there, progress is a dated line every `LINE_EVERY_S`
seconds and one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm import tqdm

LINE_EVERY_S = 30.0
"""Seconds between progress lines when the output is not a terminal."""


class LineProgress:
    """The part of tqdm's interface asyncrl uses (`n`, `update`, `set_postfix`, `close`), printing a line
    at most every `every_s` seconds instead of redrawing a bar."""

    def __init__(
        self,
        total: int,
        desc: str,
        initial: int = 0,
        unit: str = "it",
        file: IO[str] | None = None,
        every_s: float = LINE_EVERY_S,
    ) -> None:
        self.total, self.desc, self.n, self.unit, self.every_s = total, desc, initial, unit, every_s
        self.file = file if file is not None else sys.stderr
        self._postfix = ""
        self._started, self._start_n = time.monotonic(), initial
        self._last_line, self._last_n = self._started, initial

    def update(self, n: int = 1) -> None:
        self.n += n
        self._maybe_line()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())
        self._maybe_line()

    def close(self) -> None:
        if self.n != self._last_n:
            self._line()

    def _maybe_line(self) -> None:
        if time.monotonic() - self._last_line >= self.every_s:
            self._line()

    def _line(self) -> None:
        now = time.monotonic()
        rate = (self.n - self._start_n) / max(now - self._started, 1e-9)
        parts = [f"{time.strftime('%H:%M:%S')} {self.desc}: {self.n}/{self.total} {self.unit}"]
        parts += [f"{rate:.2f} {self.unit}/s"] + ([self._postfix] if self._postfix else [])
        print(", ".join(parts), file=self.file, flush=True)
        self._last_line, self._last_n = now, self.n


def progress_bar(
    total: int, desc: str, initial: int = 0, unit: str = "it", disable: bool = False
) -> tqdm | LineProgress:
    """A tqdm bar on stderr when stderr is a terminal (or nothing, `disable`); a LineProgress otherwise."""
    if disable or sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable)
    return LineProgress(total, desc, initial, unit)
