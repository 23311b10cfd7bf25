from __future__ import annotations

import pytest

from asyncrl.inference.responses import MIN_LOGPROB, ChoiceState, TokenTexts, completion_logprobs
from asyncrl.models import load_tokenizer


@pytest.fixture(scope="module")
def texts() -> TokenTexts:
    return TokenTexts(load_tokenizer("tiny"))


def test_a_partial_utf8_token_reports_its_own_byte(texts):
    assert texts.text(0xCF) == "\ufffd"
    assert texts.raw(0xCF) == b"\xcf"
    assert texts.raw(ord("a")) == b"a"


def test_every_byte_token_has_a_distinct_top_logprobs_key(texts):
    keys = {texts.key(i) for i in range(256)}
    assert len(keys) == 256
    assert texts.key(0xCF) == "bytes:\\xcf"


def test_completion_logprobs_are_finite_and_offsets_continue_across_chunks(texts):
    state = ChoiceState(index=0, stops=())
    state.token_ids = [ord("a"), ord("b"), ord("c")]
    state.logprobs = [-1.0, float("-inf"), -0.5]
    state.top_logprobs = [[(ord("a"), -1.0), (ord("z"), float("-inf"))]] * 3
    first = completion_logprobs(state, texts, start=0, top=2)
    assert first["token_logprobs"] == [-1.0, MIN_LOGPROB, -0.5]
    assert first["top_logprobs"][0] == {"a": -1.0, "z": MIN_LOGPROB}
    later = completion_logprobs(state, texts, start=2, top=0)
    assert later["text_offset"] == [2]
    assert later["top_logprobs"] is None


def test_stop_strings_cut_the_text_and_streaming_holds_back_a_possible_stop(texts):
    state = ChoiceState(index=0, stops=("xyz",))
    state.token_ids = list(b"abcxy")
    assert state.unsent_text(texts.tokenizer) == "abc"  # "xy" might start "xyz"
    state.token_ids += list(b"zq")
    state.finish_reason = "stop"
    assert state.unsent_text(texts.tokenizer) == ""
    assert state.text(texts.tokenizer) == "abc"
