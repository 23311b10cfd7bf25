"""Requests to vLLM's `/inference/v1/generate` and deltas from its answers, as vLLM 0.32 shapes them."""

from __future__ import annotations

from asyncrl.inference.backend import SamplingParams
from asyncrl.inference.vllm.wire import (
    StreamLabels,
    choice_delta,
    choice_seed,
    generate_body,
    generated_by,
    span_versions,
    top_alternatives,
)


def test_each_choice_is_one_request_with_its_own_seed():
    params = SamplingParams(max_tokens=9, temperature=0.7, top_p=0.9, seed=11, top_logprobs=3)
    first, second = (generate_body([1, 2], params, i, True, "r")["sampling_params"] for i in (0, 1))
    assert first["n"] == second["n"] == 1
    assert first["seed"] != second["seed"] and first["seed"] == choice_seed(11, 0)
    assert first["logprobs"] == 4, "the sampled token comes first, so k alternatives take k + 1 entries"
    assert generate_body([1], SamplingParams(max_tokens=1), 0, False, "r")["sampling_params"]["seed"] is None
    assert choice_seed(10**18, 3) < 2**63


def test_eos_and_stop_strings():
    plain = generate_body([1], SamplingParams(max_tokens=4, stop_token_ids=(7, 8)), 0, False, "r")
    assert plain["sampling_params"]["stop_token_ids"] == [7, 8]
    assert plain["sampling_params"]["detokenize"] is False, "no stop strings: no text needed"
    forced = SamplingParams(max_tokens=4, stop_token_ids=(7,), ignore_eos=True, stop=("##",))
    body = generate_body([1], forced, 0, False, "r")["sampling_params"]
    assert body["stop_token_ids"] == [] and body["ignore_eos"] is True
    assert body["stop"] == ["##"] and body["detokenize"] is True


def _entry(sampled: tuple[int, int], *ranked: tuple[int, int]) -> dict:
    """A vLLM logprobs entry: the sampled (id, rank) first, then candidates in rank order."""
    tops = [{"token_id": t, "logprob": -float(r), "rank": r} for t, r in (sampled, *ranked)]
    return {"token_id": sampled[0], "logprob": -float(sampled[1]), "rank": sampled[1], "top_logprobs": tops}


def test_top_alternatives_are_the_k_most_likely_whatever_was_sampled():
    unlikely_pick = _entry((50, 9), (10, 1), (11, 2), (12, 3))
    assert top_alternatives(unlikely_pick, 3) == [(10, -1.0), (11, -2.0), (12, -3.0)]
    likely_pick = _entry((11, 2), (10, 1), (12, 3), (13, 4))
    assert top_alternatives(likely_pick, 3) == [(10, -1.0), (11, -2.0), (12, -3.0)]


def test_weight_version_spans_label_every_token():
    spans = [{"version": "default", "start": 0, "end": 2}, {"version": "7", "start": 2, "end": 5}]
    assert span_versions(spans, 5, default=0) == [0, 0, 7, 7, 7]
    assert span_versions(spans, 6, default=0) is None, "spans that do not cover the tokens are not trusted"
    assert span_versions(None, 3, default=0) is None


def test_a_choice_becomes_a_delta():
    choice = {
        "index": 0,
        "token_ids": [50, 11],
        "finish_reason": "length",
        "logprobs": {"content": [_entry((50, 9), (10, 1)), _entry((11, 2), (10, 1))]},
    }
    delta = choice_delta(choice, index=3, top_k=1, versions=[4, 4], finish=True)
    assert (delta.index, delta.token_ids, delta.policy_versions) == (3, [50, 11], [4, 4])
    assert delta.logprobs == [-9.0, -2.0]
    assert delta.top_logprobs == [[(10, -1.0)], [(10, -1.0)]]
    assert delta.finish_reason == "length"
    partial = choice_delta({"token_ids": [5]}, 0, 0, [1], finish=False)
    assert partial.finish_reason is None and partial.top_logprobs == []


def test_streamed_tokens_switch_version_where_their_request_stood_at_the_pause():
    labels = StreamLabels([(0, 3)])
    assert labels.label(2) == [3, 3]
    labels.switch(5, 4)  # vLLM had generated 5 tokens when it paused; 3 are still on their way
    assert labels.label(2) == [3, 3]
    assert labels.label(3) == [3, 4, 4]
    labels.switch(0, 5)  # nothing can switch behind what was already labelled
    assert labels.label(1) == [5]


def test_a_request_is_found_inside_vllms_own_id():
    lengths = {"generate-tokens-asyncrl-ab12-9f8e7d6c": 17, "generate-tokens-asyncrl-cd34-00000000": 2}
    assert generated_by(lengths, "asyncrl-ab12") == 17
    assert generated_by(lengths, "asyncrl-ef56") is None


def test_a_vanishing_temperature_is_sent_as_greedy():
    body = generate_body([1], SamplingParams(max_tokens=1, temperature=1e-40), 0, False, "r")
    assert body["sampling_params"]["temperature"] == 0.0
    kept = generate_body([1], SamplingParams(max_tokens=1, temperature=0.3), 0, False, "r")
    assert kept["sampling_params"]["temperature"] == 0.3
