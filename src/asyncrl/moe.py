"""Mixture-of-experts routing, seen from outside transformers' modules: which experts each token went to,
and making a forward go to given ones (router replay).

The engine records, for every generated token, the experts each MoE layer chose at the position that
produced it; the trainer's forward can then route those positions to the same experts, so its logprobs
are those of the computation inference actually did. Both work through forward hooks on the routers
(`mlp.gate` of GLM-4.5 / Qwen3-MoE layers), so the HF modules, FSDP2 and LoRA stay untouched.

Replayed routing keeps the router trainable: the expert weights of a token are the router's own scores
gathered at the replayed experts (and normalised as the model does), so the router's gradient flows
through the weights of the experts the token used, exactly as it does through its own top-k choice.

On the wire (`routed_experts` of a choice) a sequence's routing is {"dtype", "shape", "data"}: data the
base64 of a little-endian array [tokens, MoE layers, top-k] of uint8 (int16 past 256 experts), layers in
decoder order, token i's entry the routing of the position that produced it (the last prompt token's for
the first).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.utils.hooks import RemovableHandle

MOE_MODEL_TYPES = ("glm4_moe", "qwen3_moe")
"""The MoE architectures asyncrl's engine, trainer and router replay know."""
NOT_REPLAYED = -1
"""The expert id of positions the trainer routes itself (prompts, tokens the engine did not record)."""


@dataclass(frozen=True)
class MoEShape:
    """Where a model's experts are: the decoder layers with routed experts, and how many each token uses."""

    layers: tuple[int, ...]
    num_experts: int
    top_k: int


def moe_shape(model: torch.nn.Module) -> MoEShape | None:
    """The model's MoE layout, or None for a dense model."""
    layers = tuple(i for i, layer in enumerate(_decoder_layers(model)) if _router(layer) is not None)
    if not layers:
        return None
    router = _router(_decoder_layers(model)[layers[0]])
    return MoEShape(layers, router.num_experts, router.top_k)


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    for module in model.modules():
        if isinstance(getattr(module, "layers", None), torch.nn.ModuleList):
            return list(module.layers)
    return []


def _router(layer: torch.nn.Module) -> torch.nn.Module | None:
    mlp = getattr(layer, "mlp", None)
    gate = getattr(mlp, "gate", None)
    return gate if gate is not None and hasattr(mlp, "experts") else None


def routers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The routers of the model's MoE layers, in decoder order."""
    shape = moe_shape(model)
    layers = _decoder_layers(model)
    return [_router(layers[i]) for i in shape.layers] if shape else []


def gate_weights(router: torch.nn.Module, logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """The weights [N, k] with which tokens mix `experts` [N, k], from the router's `logits` [N, E], as
    the model's own router computes them for its choice: sigmoid scores (GLM-4.5, whose routers carry a
    score-correction bias that only biases the choice) or a softmax (Qwen3-MoE), renormalised over the
    chosen experts when the model does so."""
    if hasattr(router, "e_score_correction_bias"):
        weights = logits.float().sigmoid().gather(1, experts)
        if router.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * router.routed_scaling_factor
    weights = logits.softmax(dim=-1, dtype=torch.float).gather(1, experts)
    if router.norm_topk_prob:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(logits.dtype)


def router_probabilities(router: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Each token's distribution over experts [N, E] (normalised sigmoid scores for GLM-4.5), the `P` of
    the load-balancing loss."""
    if hasattr(router, "e_score_correction_bias"):
        scores = logits.float().sigmoid()
        return scores / scores.sum(dim=-1, keepdim=True)
    return logits.softmax(dim=-1, dtype=torch.float)


class RoutingRecorder:
    """Keeps the experts every router chose in the last forward: `chosen[j]` is [tokens, k] of the j-th
    MoE layer, tokens flattened as the forward's batch was."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.chosen: list[torch.Tensor] = []
        self._handles = [r.register_forward_hook(self._record) for r in routers(model)]

    def _record(self, module: torch.nn.Module, args: tuple, output: tuple) -> None:
        self.chosen.append(output[2])

    def take(self) -> list[torch.Tensor]:
        """The routing of the forward just run, and a clean slate for the next one."""
        chosen, self.chosen = self.chosen, []
        return chosen

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


@dataclass
class RoutingStats:
    """What routing looked like in replayed forwards: how often the trainer's own router disagreed with the
    engine's recorded choice, and how many tokens each expert of each MoE layer got."""

    replayed_tokens: int = 0
    differing_tokens: int = 0
    expert_tokens: torch.Tensor | None = None
    """[MoE layers, experts] token counts."""


class RouterReplay:
    """Routes a forward's positions to recorded experts where given (`NOT_REPLAYED` elsewhere), counting
    where the model's own router would have chosen otherwise, and adds each router's load-balancing term
    (Switch Transformer's E * sum_e f_e * P_e) when asked."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._routers = routers(model)
        self._forced: torch.Tensor | None = None
        self._layer = 0
        self.stats = RoutingStats()
        self.balance_terms: list[torch.Tensor] = []
        self.compute_balance = False
        self._handles: list[RemovableHandle] = [r.register_forward_hook(self._route) for r in self._routers]

    @contextmanager
    def replaying(self, forced: torch.Tensor | None) -> Iterator[None]:
        """Within the block, forwards route position i of the flattened batch to `forced[i]` [N, layers, k]
        wherever it is not NOT_REPLAYED; None: every position routes itself (only counted)."""
        self._forced, self._layer = forced, 0
        try:
            yield
        finally:
            self._forced = None

    def _route(self, router: torch.nn.Module, args: tuple, output: tuple) -> tuple | None:
        logits, _, own = output
        layer = self._layer % len(self._routers)  # activation checkpointing reruns the layers in order
        self._layer += 1
        counts = torch.bincount(own.detach().flatten(), minlength=router.num_experts)
        experts = own
        if self._forced is not None:
            forced = self._forced[:, layer].to(own.device, torch.long)
            replayed = forced[:, 0] != NOT_REPLAYED
            experts = torch.where(replayed.unsqueeze(1), forced, own)
            differs = (forced.sort(dim=1).values != own.sort(dim=1).values).any(dim=1) & replayed
            self.stats.replayed_tokens += int(replayed.sum())
            self.stats.differing_tokens += int(differs.sum())
            counts = torch.bincount(experts.detach().flatten(), minlength=router.num_experts)
        self._count(layer, counts)
        if self.compute_balance:
            self.balance_terms.append(self._balance(router, logits, experts))
        if self._forced is None:
            return None
        return logits, gate_weights(router, logits, experts), experts

    def _count(self, layer: int, counts: torch.Tensor) -> None:
        if self.stats.expert_tokens is None:
            self.stats.expert_tokens = torch.zeros(len(self._routers), counts.numel(), dtype=torch.long)
        self.stats.expert_tokens[layer] += counts.cpu()

    @staticmethod
    def _balance(router: torch.nn.Module, logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        probs = router_probabilities(router, logits)
        share = torch.bincount(experts.flatten(), minlength=router.num_experts).float() / experts.numel()
        return router.num_experts * (share.detach() * probs.mean(dim=0)).sum()

    def take_stats(self) -> RoutingStats:
        stats, self.stats = self.stats, RoutingStats()
        return stats

    def take_balance_loss(self) -> torch.Tensor | None:
        """The mean load-balancing term over the routers run since the last call, or None."""
        terms, self.balance_terms = self.balance_terms, []
        return torch.stack(terms).mean() if terms else None

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def expert_load_cv(expert_tokens: torch.Tensor) -> torch.Tensor:
    """Per layer, the coefficient of variation of tokens per expert (0: perfectly even)."""
    counts = expert_tokens.float()
    return counts.std(dim=1, correction=0) / counts.mean(dim=1).clamp(min=1e-9)


WIRE_DTYPES = {"uint8": torch.uint8, "int16": torch.int16}


def encode_routed_experts(experts: torch.Tensor) -> dict[str, object]:
    """`experts` [tokens, layers, k] as sent on the wire: {"dtype", "shape", "data"}, data the base64 of
    the little-endian array (uint8, int16 when an id is past 255)."""
    name = "uint8" if experts.numel() == 0 or int(experts.max()) < 256 else "int16"
    raw = experts.to(WIRE_DTYPES[name]).contiguous().view(torch.uint8).numpy().tobytes()
    return {"dtype": name, "shape": list(experts.shape), "data": base64.b64encode(raw).decode()}


def decode_routed_experts(wire: dict[str, object]) -> torch.Tensor:
    """The int16 tensor [tokens, layers, k] of an `encode_routed_experts` dict; ValueError when malformed."""
    try:
        dtype, shape = WIRE_DTYPES[str(wire["dtype"])], [int(n) for n in wire["shape"]]
        raw = base64.b64decode(str(wire["data"]), validate=True)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"routed_experts is not {{dtype, shape, data}} of a known dtype: {e!r}") from None
    if len(shape) != 3 or len(raw) != shape[0] * shape[1] * shape[2] * dtype.itemsize:
        raise ValueError(f"routed_experts: {len(raw)} bytes do not hold a {shape} array of {dtype}")
    if not raw:
        return torch.zeros(shape, dtype=torch.int16)
    return torch.frombuffer(bytearray(raw), dtype=dtype).view(shape).to(torch.int16)
