"""Honest rollouts of the built-in engine pass verification: no false positives."""

from __future__ import annotations

from asyncrl.models import resolve_model_path
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.verify import ReferenceModel, verify_rollouts
from tests.integration.toploc.engine_rollouts import EOS, generate, prompts

# (temperature, top_p, stop strings): sampled, nucleus, greedy, and ending on a stop string.
SETTINGS = [(1.0, 1.0, ()), (0.7, 0.9, ()), (0.0, 1.0, ()), (1.0, 1.0, ("e",))]


def test_honest_rollouts_pass_whether_proved_in_float32_or_bfloat16(tiny_dir, tiny_reference):
    """The paper: proofs built in bfloat16 pass verification by recomputation in float32."""
    rollouts = [
        rollout
        for dtype in ("float32", "bfloat16")
        for rollout in generate(str(tiny_dir), prompts(120), dtype, max_tokens=80, settings=SETTINGS)
    ]
    verdicts = verify_rollouts(tiny_reference, rollouts, ToplocConfig())

    failures = [(i, v.reasons) for i, v in enumerate(verdicts) if not v.passed]
    assert len(rollouts) == 240 and failures == []
    assert {r.finish_reason for r in rollouts} == {"stop", "length"}
    assert any(r.stop and r.finish_reason == "stop" and r.token_ids[-1] not in EOS for r in rollouts)
    assert max(len(v.chunks) for v in verdicts) == 3  # 80 tokens: two full chunks and a partial one


def test_bfloat16_proofs_pass_a_bfloat16_verifier(tiny_dir):
    """Two bf16 computations (the engine's fused layers, transformers' own) round differently in every
    layer: they are checked with the measured bf16 tolerance, not as if computed alike."""
    reference = ReferenceModel.load(str(tiny_dir), "bfloat16")
    rollouts = generate(str(tiny_dir), prompts(120), "bfloat16", max_tokens=80, settings=SETTINGS)
    verdicts = verify_rollouts(reference, rollouts, ToplocConfig())
    assert [(i, v.reasons) for i, v in enumerate(verdicts) if not v.passed] == []


def test_honest_rollouts_of_a_confident_model_pass(confident_dir, confident_reference):
    rollouts = generate(confident_dir, prompts(32), "bfloat16", max_tokens=96)
    rollouts += generate(confident_dir, prompts(32), "float32", temperature=0.6, top_p=0.8, max_tokens=96)
    verdicts = verify_rollouts(confident_reference, rollouts, ToplocConfig())
    assert [v.reasons for v in verdicts if not v.passed] == []


def test_honest_rollouts_of_an_moe_model_pass():
    """The proofs commit to the last hidden state, whatever computed it: an MoE's routed layers too."""
    model_dir = str(resolve_model_path("tiny-moe"))
    rollouts = generate(model_dir, prompts(24), "float32", max_tokens=40, settings=SETTINGS)
    verdicts = verify_rollouts(ReferenceModel.load(model_dir, "float32"), rollouts, ToplocConfig())
    assert len(rollouts) == 24 and [(i, v.reasons) for i, v in enumerate(verdicts) if not v.passed] == []
