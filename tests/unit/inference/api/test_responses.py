from __future__ import annotations

import pytest

from asyncrl.inference.api.protocol import CompletionRequest
from asyncrl.inference.api.responses import (
    MIN_LOGPROB,
    ChoiceShaper,
    ChoiceState,
    TokenTexts,
    completion_logprobs,
)
from asyncrl.inference.backend import SequenceDelta
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
    whole = completion_logprobs(state, texts, start=0, top=2)
    assert whole["token_logprobs"] == [-1.0, MIN_LOGPROB, -0.5]
    assert whole["top_logprobs"][0] == {"a": -1.0, "z": MIN_LOGPROB}

    request = CompletionRequest(model="tiny", prompt="x", logprobs=0, stream=True)
    shaper = ChoiceShaper(texts.tokenizer, texts, request)
    streamed = ChoiceState(index=0, stops=())
    offsets = []
    for token_id, logprob in zip(state.token_ids, state.logprobs, strict=True):
        streamed.add(SequenceDelta(index=0, token_ids=[token_id], logprobs=[logprob], finish_reason=None))
        chunk = shaper.chunk(streamed, prompt=[1], version=0)["logprobs"]
        assert chunk["top_logprobs"] is None
        offsets += chunk["text_offset"]
    assert offsets == [0, 1, 2]


def test_stop_strings_cut_the_text_and_streaming_holds_back_a_possible_stop(texts):
    state = ChoiceState(index=0, stops=("xyz",))
    state.token_ids = list(b"abcxy")
    assert state.unsent_text(texts.tokenizer) == "abc"  # "xy" might start "xyz"
    state.token_ids += list(b"zq")
    state.finish_reason = "stop"
    assert state.unsent_text(texts.tokenizer) == ""
    assert state.text(texts.tokenizer) == "abc"


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_streamed_text_adds_up_to_the_whole_text_however_tokens_arrive(texts, chunk):
    tokens = list("héllo → wörld 🙂 ok".encode())  # multi-byte characters split across chunks
    state = ChoiceState(index=0, stops=())
    sent = []
    for i in range(0, len(tokens), chunk):
        state.token_ids += tokens[i : i + chunk]
        state.finish_reason = "length" if i + chunk >= len(tokens) else None
        piece = state.unsent_text(texts.tokenizer)
        assert "\ufffd" not in piece, "a character is sent whole"
        sent.append(piece)
    assert "".join(sent) == state.text(texts.tokenizer) == "héllo → wörld 🙂 ok"


def test_a_stop_string_split_across_chunks_cuts_the_stream(texts):
    state = ChoiceState(index=0, stops=("STOP", "é!"))
    sent = []
    for token in "ab STé!xyz".encode():
        state.token_ids.append(token)
        sent.append(state.unsent_text(texts.tokenizer))
    state.finish_reason = "stop"
    sent.append(state.unsent_text(texts.tokenizer))
    assert "".join(sent) == state.text(texts.tokenizer) == "ab ST"
