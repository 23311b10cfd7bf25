"""The trainer's checks of a batch's routing against its model and settings, before it trains on it."""

from __future__ import annotations

import pytest

from asyncrl.errors import UserError
from asyncrl.models import load_model
from asyncrl.trainer.config import TrainerConfig
from asyncrl.trainer.loop import BatchRoutingError, check_batch_routing, router_replay
from asyncrl.transport.batches import Batch
from tests.batches import make_samples


@pytest.fixture(scope="module")
def moe():
    return load_model("tiny-moe")


def test_router_replay_on_a_batch_without_routing_says_how_to_record_it(moe):
    batch = Batch.from_samples(make_samples(2, seed=0))  # the dense tiny model's: no routing
    with pytest.raises(BatchRoutingError, match="orchestrator.record_routing = true"):
        check_batch_routing(batch, 3, moe, TrainerConfig(router_replay=True))
    check_batch_routing(batch, 3, moe, TrainerConfig())


def test_routing_recorded_by_another_model_is_refused_naming_the_step(moe):
    batch = Batch.from_samples(make_samples(2, seed=0, model=load_model("tiny-qwen3-moe")))
    expected = r"the step 3 batch: the routing has \[MoE layers, k\] = \[4, 2\]"
    with pytest.raises(BatchRoutingError, match=expected):
        check_batch_routing(batch, 3, moe, TrainerConfig(router_replay=True))
    own = Batch.from_samples(make_samples(2, seed=0, model=moe))
    assert own.routed_experts is not None
    check_batch_routing(own, 3, moe, TrainerConfig(router_replay=True))


def test_moe_settings_on_a_dense_model_are_refused():
    for settings in ({"router_replay": True}, {"moe_balance_loss_coef": 0.01}):
        with pytest.raises(UserError, match="need an MoE model; this one is dense"):
            router_replay(load_model("tiny"), TrainerConfig(**settings))
    assert router_replay(load_model("tiny"), TrainerConfig()) is None
