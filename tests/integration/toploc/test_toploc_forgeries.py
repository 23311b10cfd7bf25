"""Rollouts that did not come from the claimed model and sampling, as claimed, fail verification."""

from __future__ import annotations

import pytest

from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.rollouts import Rollout
from asyncrl.toploc.verify import Verdict, verify_rollouts
from tests.integration.toploc.engine_rollouts import generate, prompts

CONFIG = ToplocConfig()


@pytest.fixture(scope="module")
def honest(tiny_dir) -> list[Rollout]:
    return generate(str(tiny_dir), prompts(32), max_tokens=80)


def _flagged(verdicts: list[Verdict], words: str) -> bool:
    """Every rollout fails, each with a reason that says `words`."""
    return all(not v.passed and any(words in r for r in v.reasons) for v in verdicts)


def test_rollouts_of_other_weights_fail(other_weights_dir, tiny_reference):
    forged = generate(other_weights_dir, prompts(24))
    assert _flagged(verify_rollouts(tiny_reference, forged, CONFIG), "TOPLOC")


def test_rollouts_of_a_model_with_one_perturbed_layer_fail(perturbed_layer_dir, tiny_reference):
    forged = generate(perturbed_layer_dir, prompts(24))
    assert _flagged(verify_rollouts(tiny_reference, forged, CONFIG), "TOPLOC")


def test_rollouts_claimed_for_another_prompt_fail(honest, tiny_reference):
    other_task = [list(b"Q%d: what is %d + %d? Answer briefly." % (i, i, 2 * i)) for i in range(len(honest))]
    forged = [r.model_copy(update={"prompt_token_ids": p}) for r, p in zip(honest, other_task, strict=True)]
    assert _flagged(verify_rollouts(tiny_reference, forged, CONFIG), "TOPLOC")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_one_token_swapped_at_any_position_fails_and_honest_rollouts_pass(dtype, tiny_dir, tiny_reference):
    """Each token commits its own largest hidden-state values, at points bound to the token: one other
    token anywhere, the last one included, fails its chunk, on proofs built in float32 (checked as exact)
    and in bfloat16 (checked with the measured cross-precision tolerance) alike."""
    rollouts = generate(str(tiny_dir), prompts(16), max_tokens=80, dtype=dtype)
    assert all(v.passed for v in verify_rollouts(tiny_reference, rollouts, CONFIG))
    full = next(r for r in rollouts if len(r.token_ids) == 80)
    forged = []
    for position, token in enumerate(full.token_ids):
        ids = list(full.token_ids)
        ids[position] = token ^ 1
        forged.append(full.model_copy(update={"token_ids": ids}))
    verdicts = verify_rollouts(tiny_reference, forged, CONFIG)
    assert _flagged(verdicts, "TOPLOC")
    assert all(not v.chunks[position // 32].passed for position, v in enumerate(verdicts))


def test_a_chunk_proof_copied_from_another_rollout_fails(honest, tiny_reference):
    long = [r for r in honest if len(r.toploc_proofs) == 3]
    assert len(long) >= 4
    forged = [
        r.model_copy(
            update={"toploc_proofs": [r.toploc_proofs[0], donor.toploc_proofs[1], r.toploc_proofs[2]]}
        )
        for r, donor in zip(long, long[1:] + long[:1], strict=True)
    ]
    verdicts = verify_rollouts(tiny_reference, forged, CONFIG)
    assert _flagged(verdicts, "TOPLOC: chunk(s) 1 of 3")
    assert all([c.passed for c in v.chunks] == [True, False, True] for v in verdicts)


def test_rollouts_sampled_colder_than_claimed_fail(confident_dir, confident_reference):
    rollouts = generate(confident_dir, prompts(32), temperature=0.5, claimed_temperature=1.0, max_tokens=96)
    long = [r for r in rollouts if len(r.token_ids) >= 64]
    assert len(long) >= 8
    assert _flagged(verify_rollouts(confident_reference, long, CONFIG), "sampled colder than claimed")


def test_rollouts_sampled_hotter_than_claimed_fail(confident_dir, confident_reference):
    rollouts = generate(confident_dir, prompts(32), temperature=1.0, claimed_temperature=0.5, max_tokens=96)
    long = [r for r in rollouts if len(r.token_ids) >= 64]
    assert len(long) >= 8
    assert _flagged(verify_rollouts(confident_reference, long, CONFIG), "sampled hotter than claimed")


def test_sampled_rollouts_claimed_greedy_fail(honest, tiny_reference):
    forged = [r.model_copy(update={"temperature": 0.0}) for r in honest if len(r.token_ids) >= 8]
    assert _flagged(verify_rollouts(tiny_reference, forged, CONFIG), "could not have been sampled")


def test_rollouts_cut_short_without_a_legitimate_end_fail(honest, tiny_reference):
    """Cut at a chunk boundary, so the proofs of what is left still match: only the ending gives it away."""
    full = [r for r in honest if r.finish_reason == "length" and len(r.token_ids) == 80]
    assert len(full) >= 4
    cut = [
        r.model_copy(update={"token_ids": r.token_ids[:32], "toploc_proofs": r.toploc_proofs[:1]})
        for r in full
    ]
    verdicts = verify_rollouts(tiny_reference, cut, CONFIG)
    assert _flagged(verdicts, "finish_reason 'length' after 32 of max_tokens=80")
    assert all(all(c.passed for c in v.chunks) for v in verdicts)
    relabelled = [
        r.model_copy(update={"finish_reason": "stop"}) for r in cut if r.token_ids[-1] not in (256, 258)
    ]
    assert _flagged(verify_rollouts(tiny_reference, relabelled, CONFIG), "neither EOS nor a stop string")
    aborted = [r.model_copy(update={"finish_reason": "abort"}) for r in cut]
    assert _flagged(verify_rollouts(tiny_reference, aborted, CONFIG), "not a legitimate end")
