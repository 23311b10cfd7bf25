"""Blockwise target logprobs and entropy: the values and gradients of a full-vocabulary log_softmax, with
no positions x vocabulary tensor, at a 150k-token vocabulary."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from asyncrl.trainer.logprobs import chunked_logprobs
from tests.allocations import largest_tensor_bytes


def _full(hidden: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor, temperatures: torch.Tensor):
    logprobs = (head(hidden).float() / temperatures.unsqueeze(1)).log_softmax(-1)
    return logprobs.gather(1, targets.unsqueeze(1)).squeeze(1), -(logprobs.exp() * logprobs).sum(-1)


@pytest.mark.parametrize("bias", [False, True])
def test_blockwise_logprobs_and_gradients_equal_the_full_softmax(bias):
    torch.manual_seed(0)
    n, hidden_size, vocab = 53, 16, 300
    head = torch.nn.Linear(hidden_size, vocab, bias=bias)
    hidden = torch.randn(n, hidden_size, requires_grad=True)
    targets, temperatures = torch.randint(0, vocab, (n,)), torch.rand(n) + 0.5
    weights = torch.randn(n)
    results = []
    for compute in (
        lambda: chunked_logprobs(hidden, head, targets, temperatures, chunk=8),
        lambda: _full(hidden, head, targets, temperatures),
    ):
        hidden.grad = None
        head.zero_grad()
        logprobs, entropy = compute()
        (logprobs * weights).sum().backward()
        grads = [hidden.grad.clone(), head.weight.grad.clone()] + ([head.bias.grad.clone()] if bias else [])
        results.append((logprobs.detach(), entropy.detach(), grads))
    (got_lp, got_ent, got_grads), (want_lp, want_ent, want_grads) = results
    assert torch.allclose(got_lp, want_lp, atol=1e-5)
    assert torch.allclose(got_ent, want_ent, atol=1e-5)
    assert not got_ent.requires_grad
    for got, want in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-5)


def test_a_150k_vocabulary_never_materialises_positions_times_vocabulary():
    vocab, n, chunk = 151_936, 2048, 128
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=False,
    )  # fmt: skip
    head = Qwen2ForCausalLM(config).lm_head
    hidden = torch.randn(n, 16, requires_grad=True)
    targets, temperatures = torch.randint(0, vocab, (n,)), torch.ones(n)

    def step() -> None:
        logprobs, _ = chunked_logprobs(hidden, head, targets, temperatures, chunk=chunk)
        logprobs.sum().backward()

    largest = largest_tensor_bytes(step)
    assert largest <= chunk * vocab * 4, "one block of float32 logits is the largest tensor"
    assert largest * 10 < n * vocab * 4, "the full logits would be 16x larger"
