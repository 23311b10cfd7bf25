import math

import torch

from asyncrl.inference.torch.sampling import nucleus_logprobs, sample


def _sample(logits, temperature, top_p, generators=None, top_k=0, seed=0):
    rows = logits.shape[0]
    return sample(
        logits,
        temperature,
        top_p,
        generators or [None] * rows,
        torch.Generator().manual_seed(seed),
        top_k,
    )


def test_greedy_picks_argmax_and_reports_the_model_logprob():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    out = _sample(logits, [0.0, 0.0], [1.0, 1.0])
    assert out.token_ids.tolist() == [1, 2]
    expected = logits.log_softmax(-1)
    assert torch.allclose(out.logprobs, expected[[0, 1], [1, 2]])


def test_nucleus_keeps_the_smallest_prefix_reaching_top_p_and_renormalises():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = nucleus_logprobs(probs.log(), torch.tensor([0.8]))
    kept = out.exp()
    # 0.5 + 0.3 reaches 0.8: the last two are dropped; the rest renormalised to 0.5/0.8, 0.3/0.8.
    assert torch.allclose(kept, torch.tensor([[0.625, 0.375, 0.0, 0.0]]), atol=1e-6)


def test_nucleus_always_keeps_the_top_token():
    out = nucleus_logprobs(torch.tensor([[0.9, 0.1]]).log(), torch.tensor([0.01]))
    assert torch.allclose(out.exp(), torch.tensor([[1.0, 0.0]]))


def test_sampled_logprob_is_of_the_tempered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    out = _sample(logits, [0.5], [1.0])
    expected = (logits / 0.5).log_softmax(-1)[0, out.token_ids[0]]
    assert math.isclose(out.logprobs[0].item(), expected.item(), rel_tol=1e-6)


def test_sampling_frequencies_follow_the_distribution():
    logits = torch.tensor([[math.log(0.7), math.log(0.2), math.log(0.1)]]).repeat(20000, 1)
    out = _sample(logits, [1.0] * 20000, [1.0] * 20000)
    freq = torch.bincount(out.token_ids, minlength=3).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.015)


def test_top_p_never_samples_outside_the_nucleus():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)]]).repeat(5000, 1)
    out = _sample(logits, [1.0] * 5000, [0.8] * 5000)
    assert set(out.token_ids.tolist()) == {0, 1}


def test_a_seeded_row_does_not_depend_on_its_batch_neighbours():
    logits = torch.randn(3, 50)
    alone = _sample(logits[:1], [1.0], [1.0], [torch.Generator().manual_seed(7)], seed=1)
    batched = _sample(
        logits, [1.0, 1.0, 0.0], [1.0, 0.9, 1.0], [torch.Generator().manual_seed(7), None, None], seed=2
    )
    assert alone.token_ids[0] == batched.token_ids[0]


def test_top_logprobs_are_sorted_and_include_the_greedy_choice():
    logits = torch.randn(2, 30)
    out = _sample(logits, [0.0, 0.0], [1.0, 1.0], top_k=5)
    assert out.top_logprobs.shape == (2, 5)
    assert (out.top_logprobs[:, :-1] >= out.top_logprobs[:, 1:]).all()
    assert (out.top_ids[:, 0] == out.token_ids).all()
