from __future__ import annotations

import pytest

from asyncrl.envs.parsers import BoxedParser, Parser, ThinkParser, XMLParser


def test_plain_parser_reads_the_last_assistant_message():
    messages = [{"role": "assistant", "content": " first "}, {"role": "tool", "content": "x"},
                {"role": "assistant", "content": " last "}]  # fmt: skip
    assert Parser().parse_answer(messages) == "last"
    assert Parser().parse_answer("   ") is None
    assert Parser().format_reward("") == 0.0


@pytest.mark.parametrize(
    ("text", "answer", "format_ok"),
    [
        ("<think>plan</think> 42", "42", 1.0),
        ("<think>a</think><think>b</think>7", "7", 0.0),  # two blocks: answer after the last, bad format
        ("<think>never closed 42", None, 0.0),
        ("42 </think> 43", "43", 0.0),  # no opening tag
        ("<think>x</think>   ", None, 0.0),
    ],
)
def test_think_parser(text, answer, format_ok):
    assert ThinkParser().parse_answer(text) == answer
    assert ThinkParser().format_reward(text) == format_ok


def test_xml_parser_takes_the_last_closed_field_and_scores_the_format():
    parser = XMLParser(["reasoning", "answer"])
    text = "<reasoning>r1</reasoning><answer>a1</answer><answer>a2</answer><answer>open"
    assert parser.parse(text) == {"reasoning": "r1", "answer": "a2"}
    assert parser.format_reward(text) == 0.5
    assert parser.format_reward("<reasoning>r</reasoning><answer>a</answer>") == 1.0
    assert parser.parse_answer("<reasoning>r</reasoning>") is None
    with pytest.raises(ValueError):
        XMLParser(["reasoning"])


@pytest.mark.parametrize(
    ("text", "answer", "format_ok"),
    [
        (r"so \boxed{42}", "42", 1.0),
        (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}", 0.0),  # several: the last, nested braces
        (r"\boxed{unclosed {", None, 0.0),
        (r"\boxed{a} \boxed{b", "a", 1.0),
        ("no box", None, 0.0),
    ],
)
def test_boxed_parser(text, answer, format_ok):
    assert BoxedParser().parse_answer(text) == answer
    assert BoxedParser().format_reward(text) == format_ok
