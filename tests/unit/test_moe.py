"""Routing seen from outside transformers' MoE modules: the wire format, the gate weights of given
experts, replaying and measuring, and the load figures."""

from __future__ import annotations

import pytest
import torch

from asyncrl.models import load_model
from asyncrl.moe import (
    NOT_REPLAYED,
    RouterReplay,
    check_routing,
    decode_routed_experts,
    encode_routed_experts,
    expert_load_cv,
    gate_weights,
    moe_shape,
    routers,
)

MOE_MODELS = ["tiny-moe", "tiny-qwen3-moe"]


def test_routed_experts_round_trip_the_wire_in_uint8_and_int16():
    small = torch.randint(0, 8, (5, 3, 2), dtype=torch.int16)
    wire = encode_routed_experts(small)
    assert wire["dtype"] == "uint8" and wire["shape"] == [5, 3, 2]
    assert torch.equal(decode_routed_experts(wire), small)
    large = torch.randint(0, 300, (4, 2, 8), dtype=torch.int16)
    assert encode_routed_experts(large)["dtype"] == "int16"
    assert torch.equal(decode_routed_experts(encode_routed_experts(large)), large)


@pytest.mark.parametrize(
    "wire",
    [
        {"dtype": "uint8", "shape": [2, 3, 2], "data": "AAAA"},
        {"dtype": "float32", "shape": [1, 1, 1], "data": "AAAAAA=="},
        {"dtype": "uint8", "shape": [1, 1], "data": "AA=="},
        {"dtype": "uint8", "shape": [1, 1, 1], "data": "not base64!"},
        {"shape": [1, 1, 1], "data": "AA=="},
    ],
)
def test_malformed_routed_experts_are_a_value_error(wire):
    with pytest.raises(ValueError, match="routed_experts"):
        decode_routed_experts(wire)


@pytest.mark.parametrize("name", MOE_MODELS)
def test_gate_weights_of_the_routers_own_choice_equal_its_weights(name):
    model = load_model(name)
    x = torch.randn(16, model.config.hidden_size)
    for router in routers(model):
        logits, weights, experts = router(x)
        torch.testing.assert_close(gate_weights(router, logits, experts), weights)


@pytest.mark.parametrize("name", MOE_MODELS)
def test_the_shape_names_the_moe_layers_and_a_dense_model_has_none(name):
    shape = moe_shape(load_model(name))
    assert shape.layers == ((1, 2, 3) if name == "tiny-moe" else (0, 1, 2, 3))
    assert (shape.num_experts, shape.top_k) == (8, 2)
    assert moe_shape(load_model("tiny")) is None


@pytest.mark.parametrize("name", MOE_MODELS)
def test_replaying_routes_recorded_positions_to_the_recorded_experts_and_counts_disagreement(name):
    model = load_model(name)
    ids = torch.randint(0, 256, (1, 12))
    chosen: list[torch.Tensor] = []
    for router in routers(model):
        router.register_forward_hook(lambda module, args, output: chosen.append(output[2]))
    with torch.no_grad():
        reference = model(ids).logits
    own = torch.stack(chosen, dim=1)  # [12, layers, k]
    replay = RouterReplay(model, apply=True)
    used: list[torch.Tensor] = []  # hooks run in order: this one sees the replayed choice
    for router in routers(model):
        router.register_forward_hook(lambda module, args, output: used.append(output[2]))

    forced = torch.full_like(own, NOT_REPLAYED)
    forced[4:] = (own[4:] + 1) % 8  # other experts than the router's on positions 4..11
    replay.replaying(forced, torch.ones(12, dtype=torch.bool))
    with torch.no_grad():
        replayed = model(ids).logits
    # Position 4's own routing is forced on every layer, so its logits move; 0..3 route themselves.
    torch.testing.assert_close(replayed[0, :4], reference[0, :4])
    assert not torch.allclose(replayed[0, 4], reference[0, 4])
    assert torch.equal(used[0][4:].sort(dim=1).values, forced[4:, 0].sort(dim=1).values)
    stats = replay.take_stats()
    assert stats.recorded_tokens == 8 * len(own[0])  # 8 positions on each MoE layer
    assert stats.differing_tokens >= 8  # the first MoE layer sees the unchanged input: all 8 differ
    assert stats.expert_tokens.sum() == 12 * 2 * len(own[0])

    replay.replaying(own, torch.ones(12, dtype=torch.bool))  # the router's own choice: nothing changes
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference)
    assert replay.take_stats().differing_tokens == 0


def test_replay_keeps_the_router_trainable():
    model = load_model("tiny-moe")
    replay = RouterReplay(model, apply=True)
    ids = torch.randint(0, 256, (1, 10))
    forced = torch.randint(0, 8, (10, 3, 2))
    forced[:, :, 1] = (forced[:, :, 0] + 1) % 8
    replay.replaying(forced, torch.ones(10, dtype=torch.bool))
    model(ids).logits.sum().backward()
    for router in routers(model):
        assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0


def test_the_balance_term_is_one_when_load_and_probabilities_are_even():
    model = load_model("tiny-qwen3-moe")
    replay = RouterReplay(model, apply=False, balance=True)
    replay.replaying(None, torch.ones(8, dtype=torch.bool))
    for router in routers(model):
        router.weight.data.zero_()  # uniform probabilities
    model(torch.randint(0, 256, (1, 8)))
    balance = replay.take_balance_loss()
    # Uniform P_e = 1/E: E * sum_e f_e / E = 1 whatever the load.
    torch.testing.assert_close(balance, torch.tensor(1.0))


def test_expert_load_cv_is_zero_for_even_load_and_grows_with_imbalance():
    counts = torch.tensor([[5, 5, 5, 5], [20, 0, 0, 0]])
    torch.testing.assert_close(expert_load_cv(counts), torch.tensor([0.0, 3**0.5]))


def test_a_recomputing_backward_routes_as_its_forward_did():
    """Activation checkpointing reruns each layer in the backward pass: with replay, the rerun must use
    the replayed experts again, or the gradients would belong to another computation."""
    ids = torch.randint(0, 256, (1, 10))
    forced = torch.randint(0, 8, (10, 3, 2))
    forced[:, :, 1] = (forced[:, :, 0] + 1) % 8
    grads = []
    for checkpointing in (False, True):
        model = load_model("tiny-moe")
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        replay = RouterReplay(model, apply=True)
        replay.replaying(forced, torch.ones(10, dtype=torch.bool))
        model(ids).logits.logsumexp(-1).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert replay.take_stats().recorded_tokens == 10 * 3  # the rerun did not count twice
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_the_balance_loss_comes_from_the_forward_alone_under_activation_checkpointing():
    """The backward's recompute must not leave terms that a later micro-batch would take as its own."""
    model = load_model("tiny-moe")
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    replay = RouterReplay(model, apply=False, balance=True)
    replay.replaying(None, torch.ones(8, dtype=torch.bool))
    logits = model(torch.randint(0, 256, (1, 8))).logits
    balance = replay.take_balance_loss()
    (logits.sum() + balance).backward()  # recomputes every layer
    assert replay.take_balance_loss() is None
    replay.replaying(None, torch.zeros(4, dtype=torch.bool))  # a filler micro-batch: nothing counts
    model(torch.randint(0, 256, (1, 4)))
    assert float(replay.take_balance_loss().detach()) == 0.0


def test_routing_of_another_model_or_out_of_range_is_refused():
    shape = moe_shape(load_model("tiny-moe"))  # 3 MoE layers, 8 experts, top-2
    good = torch.full((5, 3, 2), NOT_REPLAYED, dtype=torch.int16)
    good[2:] = 3
    check_routing(good, shape)
    with pytest.raises(ValueError, match=r"\[MoE layers, k\] = \[4, 2\], this model \[3, 2\]"):
        check_routing(torch.zeros(5, 4, 2, dtype=torch.int16), shape)
    with pytest.raises(ValueError, match="outside 0..7"):
        check_routing(good.clone().fill_(8), shape)
    partial = good.clone()
    partial[0, 1, 0] = 2
    with pytest.raises(ValueError, match="some experts recorded and some not"):
        check_routing(partial, shape)
