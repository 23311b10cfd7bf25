"""Each loss on small hand-made tensors, against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from asyncrl.trainer.config import LossConfig
from asyncrl.trainer.losses import (
    LossImportError,
    LossInputs,
    dppo_kl,
    grpo_clip,
    masked_is,
    resolve_loss,
    sft,
)


def _inputs(p_train, p_inference, advantages, sample_ids=None, mask=None, total=None) -> LossInputs:
    logprobs = torch.tensor(p_train, dtype=torch.float64).log().requires_grad_()
    n = len(p_train)
    return LossInputs(
        logprobs=logprobs,
        inference_logprobs=torch.tensor(p_inference, dtype=torch.float64).log(),
        advantages=torch.tensor(advantages, dtype=torch.float64),
        loss_mask=torch.tensor(mask if mask is not None else [True] * n),
        sample_ids=torch.tensor(sample_ids if sample_ids is not None else [0] * n),
        total_loss_tokens=total if total is not None else n,
    )


def test_masked_is_masks_tokens_whose_ratio_leaves_the_bounds_on_both_sides():
    # ratios 1, 0.1 (below 0.125), 10 (above 8), 2; the sample's geometric mean 2**0.25 is in bounds.
    batch = _inputs([0.5] * 4, [0.5, 5.0, 0.05, 0.25], [1, 1, 1, -1])
    out = masked_is(batch, LossConfig())
    assert out.loss.item() == pytest.approx(-(1 * 1 + (-1) * 2) / 4)
    assert out.masked_tokens.item() == 2
    out.loss.backward()
    # d(-A r / N)/d logp = -A r / N on kept tokens, 0 on masked ones.
    assert batch.logprobs.grad.tolist() == pytest.approx([-0.25, 0.0, 0.0, 0.5])


def test_masked_is_masks_whole_sequences_by_geometric_mean_ratio():
    # Sample 0 has ratios 3, 3 (each token in bounds, mean 3 > seq_high 2); sample 1 has ratio 1.
    batch = _inputs([0.6, 0.6, 0.5, 0.5], [0.2, 0.2, 0.5, 0.5], [1, 1, 1, 1], sample_ids=[0, 0, 1, 1])
    out = masked_is(batch, LossConfig())
    assert out.masked_tokens.item() == 2
    assert out.loss.item() == pytest.approx(-2 / 4)
    low = masked_is(
        _inputs([0.1, 0.1, 0.5], [0.5, 0.5, 0.5], [1, 1, 1], sample_ids=[0, 0, 1]), LossConfig(token_low=0.01)
    )
    assert low.masked_tokens.item() == 2


def test_losses_normalise_by_the_tokens_of_the_whole_step():
    local = masked_is(_inputs([0.5, 0.5], [0.5, 0.5], [1, 1]), LossConfig())
    global_ = masked_is(_inputs([0.5, 0.5], [0.5, 0.5], [1, 1], total=10), LossConfig())
    assert local.loss.item() == pytest.approx(-1.0)
    assert global_.loss.item() == pytest.approx(-2 / 10)


def test_masked_is_ignores_tokens_outside_the_loss_mask():
    batch = _inputs([0.5, 0.5], [0.5, 0.001], [1, 1], mask=[True, False], total=1)
    out = masked_is(batch, LossConfig())
    assert out.loss.item() == pytest.approx(-1.0)
    assert out.masked_tokens.item() == 0
    assert out.mismatch_kl.item() == pytest.approx(0.0)


def test_mismatch_kl_is_the_k3_estimate_and_can_be_a_penalty():
    batch = _inputs([0.5], [0.25], [0.0])
    r = 2.0
    out = masked_is(batch, LossConfig(mismatch_kl_coef=0.5))
    assert out.mismatch_kl.item() == pytest.approx(r - 1 - math.log(r))
    assert out.loss.item() == pytest.approx(0.5 * (r - 1 - math.log(r)))


def test_dppo_kl_drops_by_probability_difference_and_advantage_sign():
    # dp = +0.3, +0.3, -0.3, -0.3 with advantages +, -, -, +: tokens 0 (A>0, dp>0.2) and 2 (A<=0,
    # dp<-0.2) are dropped; tokens 1 and 3 keep their policy-gradient term.
    batch = _inputs([0.5] * 4, [0.2, 0.2, 0.8, 0.8], [1, -1, -1, 1])
    tau = 1e-3
    out = dppo_kl(batch, LossConfig(kl_tau=tau))
    r_up, r_down = 0.5 / 0.2, 0.5 / 0.8
    kl = 2 * tau * math.log(r_up) ** 2 + 2 * tau * math.log(r_down) ** 2
    expected = (r_up - r_down + kl) / 4  # -A r with A = -1 on token 1 and A = +1 on token 3
    assert out.loss.item() == pytest.approx(expected)
    assert out.masked_tokens.item() == 2


def test_grpo_clip_clips_both_sides_and_caps_negative_advantage_ratios():
    # (ratio, advantage): clipped high, unclipped, clipped low, capped at delta, unclipped.
    ratios = [1.5, 0.5, 0.5, 6.0, 1.1]
    advantages = [1, 1, -1, -1, -1]
    batch = _inputs([0.5] * 5, [0.5 / r for r in ratios], advantages)
    out = grpo_clip(batch, LossConfig(clip_eps=0.2, clip_delta=4.0))
    assert out.loss.item() == pytest.approx(-(1.2 + 0.5 - 0.8 - 4.0 - 1.1) / 5)
    assert out.masked_tokens.item() == 3
    out.loss.backward()
    grads = batch.logprobs.grad.tolist()
    assert grads[0] == grads[2] == grads[3] == 0.0
    assert grads[1] == pytest.approx(-0.5 / 5) and grads[4] == pytest.approx(1.1 / 5)


def test_sft_is_mean_negative_logprob_over_the_mask():
    batch = _inputs([0.5, 0.25, 0.1], [1, 1, 1], [0, 0, 0], mask=[True, True, False], total=2)
    assert sft(batch, LossConfig()).loss.item() == pytest.approx((math.log(2) + math.log(4)) / 2)


def test_custom_loss_is_loaded_from_an_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_losses.py").write_text(
        "from asyncrl.trainer.losses import sft\n\ndef halved(batch, config):\n"
        "    out = sft(batch, config)\n    out.loss = out.loss / 2\n    return out\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loss_fn = resolve_loss(LossConfig(type="custom", import_path="my_losses:halved"))
    batch = _inputs([0.5], [1.0], [0.0])
    assert loss_fn(batch, LossConfig()).loss.item() == pytest.approx(math.log(2) / 2)


@pytest.mark.parametrize("path", [None, "nope", "no_such_module:f", "math:no_such_function", "math:pi"])
def test_bad_custom_loss_paths_are_clear_errors(path):
    with pytest.raises(LossImportError):
        resolve_loss(LossConfig(type="custom", import_path=path))
