"""Progress where the output is not a terminal: plain lines now and then, never a redrawn bar."""

from __future__ import annotations

import io

from tqdm import tqdm

from asyncrl.progress import LineProgress, progress_bar


def test_lines_carry_the_count_the_rate_and_the_postfix_without_carriage_returns():
    out = io.StringIO()
    bar = LineProgress(4, "trainer", initial=1, unit="step", file=out, every_s=0)
    bar.update(1)
    bar.set_postfix(loss="0.5000", wait="0.1s")
    bar.n = 4  # as the launcher sets it
    bar.set_postfix({"reward": "0.700"})
    bar.close()  # nothing new since the last line: no repeat
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 3
    assert "trainer: 2/4 step" in lines[0] and "step/s" in lines[0]
    assert lines[1].endswith("loss=0.5000, wait=0.1s")
    assert "trainer: 4/4 step" in lines[2] and lines[2].endswith("reward=0.700")


def test_between_lines_it_stays_quiet_and_closing_prints_the_last_count():
    out = io.StringIO()
    bar = LineProgress(100, "rl", unit="step", file=out, every_s=3600)
    for _ in range(100):
        bar.update(1)
    assert out.getvalue() == ""
    bar.close()
    assert out.getvalue().count("\n") == 1 and "rl: 100/100 step" in out.getvalue()


def test_a_bar_only_on_a_terminal():
    # pytest captures stderr: not a terminal.
    assert isinstance(progress_bar(10, "eval"), LineProgress)
    assert isinstance(progress_bar(10, "trainer", disable=True), tqdm)
