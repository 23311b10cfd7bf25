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
import re
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
    """What routing looked like in the forwards since the last `take_stats`: how often the trainer's own
    router chose other experts than the recorded ones, and how many tokens each expert got."""

    recorded_tokens: int = 0
    """Positions whose routing inference recorded."""
    differing_tokens: int = 0
    """Of those, the ones whose trainer-side top-k set differs from inference's."""
    expert_tokens: torch.Tensor | None = None
    """[MoE layers, experts] tokens routed to each expert (after replay, when replaying)."""

    def add(self, other: RoutingStats) -> None:
        self.recorded_tokens += other.recorded_tokens
        self.differing_tokens += other.differing_tokens
        if other.expert_tokens is not None:
            base = self.expert_tokens
            self.expert_tokens = other.expert_tokens.clone() if base is None else base + other.expert_tokens


class RouterReplay:
    """Hooks on every router of a model: given the recorded experts of a forward's positions, measures
    where the model's own choice differs and, when `apply`, routes those positions to the recorded experts
    instead (see the module doc); optionally adds each router's load-balancing term (Switch Transformer's
    E * sum_e f_e * P_e).

    What `replaying` sets stays in force until the next call, so a backward that recomputes layers
    (activation checkpointing) routes them as their forward did; figures are kept per layer and
    overwritten by a recompute, so it does not count twice."""

    def __init__(self, model: torch.nn.Module, apply: bool, balance: bool = False) -> None:
        found = routers(model)
        self._layer_of = {id(r): j for j, r in enumerate(found)}
        self.num_layers = len(found)
        self.apply = apply
        """Replay recorded routing (else only measure it)."""
        self.balance = balance
        """Compute the load-balancing terms (`take_balance_loss`)."""
        self._forced: torch.Tensor | None = None
        self._valid: torch.Tensor | None = None
        self._apply = False
        self._per_layer: dict[int, RoutingStats] = {}
        self._balance_terms: dict[int, torch.Tensor] = {}
        self._stats = RoutingStats()
        self._handles: list[RemovableHandle] = [r.register_forward_hook(self._route) for r in found]

    def replaying(self, forced: torch.Tensor | None, valid: torch.Tensor) -> None:
        """Route the next forward's flattened positions: `forced` [N, layers, k] the recorded experts
        (NOT_REPLAYED where none, None for no recording), `valid` [N] the positions that are tokens (not
        padding)."""
        self._fold()
        self._forced, self._valid, self._apply = forced, valid, self.apply and forced is not None

    def _route(self, router: torch.nn.Module, args: tuple, output: tuple) -> tuple | None:
        logits, _, own = output
        layer = self._layer_of[id(router)]
        stats = RoutingStats()
        experts = own
        if self._forced is not None:
            forced = self._forced[:, layer].to(own.device, torch.long)
            recorded = forced[:, 0] != NOT_REPLAYED
            differs = (forced.sort(dim=1).values != own.sort(dim=1).values).any(dim=1) & recorded
            stats.recorded_tokens, stats.differing_tokens = int(recorded.sum()), int(differs.sum())
            if self._apply:
                experts = torch.where(recorded.unsqueeze(1), forced, own)
        valid = self._valid.to(own.device) if self._valid is not None else None
        counted = experts.detach()[valid] if valid is not None else experts.detach()
        stats.expert_tokens = torch.bincount(counted.flatten(), minlength=router.num_experts).cpu()
        self._per_layer[layer] = stats
        if self.balance and (valid is None or bool(valid.any())):
            self._balance_terms[layer] = self._balance(router, logits, experts, valid)
        if not self._apply:
            return None
        return logits, gate_weights(router, logits, experts), experts

    @staticmethod
    def _balance(
        router: torch.nn.Module, logits: torch.Tensor, experts: torch.Tensor, valid: torch.Tensor | None
    ) -> torch.Tensor:
        probs = router_probabilities(router, logits)
        if valid is not None:
            probs, experts = probs[valid], experts[valid]
        share = torch.bincount(experts.flatten(), minlength=router.num_experts).float() / max(
            1, experts.numel()
        )
        return router.num_experts * (share.detach() * probs.mean(dim=0)).sum()

    def _fold(self) -> None:
        for layer in sorted(self._per_layer):
            stats = self._per_layer[layer]
            counts = stats.expert_tokens
            if counts is not None:
                per_layer = torch.zeros(self.num_layers, counts.numel(), dtype=torch.long)
                per_layer[layer] = counts
                stats = RoutingStats(stats.recorded_tokens, stats.differing_tokens, per_layer)
            self._stats.add(stats)
        self._per_layer = {}

    def take_stats(self) -> RoutingStats:
        """The figures of every forward since the last call."""
        self._fold()
        stats, self._stats = self._stats, RoutingStats()
        return stats

    def take_balance_loss(self) -> torch.Tensor | None:
        """The mean load-balancing term of the last forward's routers (with grad), or None."""
        terms, self._balance_terms = self._balance_terms, {}
        return torch.stack(list(terms.values())).mean() if terms else None

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def expert_load_cv(expert_tokens: torch.Tensor) -> torch.Tensor:
    """Per layer, the coefficient of variation of tokens per expert (0: perfectly even)."""
    counts = expert_tokens.float()
    return counts.std(dim=1, correction=0) / counts.mean(dim=1).clamp(min=1e-9)


_EXPERT_MATRIX = re.compile(r"^(.*\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


def fuse_experts(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` with per-expert matrices (the Hub layout, which transformers' save_pretrained writes)
    stacked into the 3-D parameters transformers' MoE modules hold: `experts.gate_up_proj` [E, 2I, H],
    each expert's gate rows before its up rows, and `experts.down_proj` [E, H, I]. Other tensors pass."""
    found: dict[str, dict[str, dict[int, torch.Tensor]]] = {}
    fused: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        match = _EXPERT_MATRIX.match(name)
        if match is None:
            fused[name] = tensor
            continue
        prefix, expert, proj = match.groups()
        found.setdefault(prefix, {}).setdefault(proj, {})[int(expert)] = tensor
    for prefix, projections in found.items():

        def stacked(proj: str, prefix: str = prefix, projections: dict = projections) -> torch.Tensor:
            experts = projections.get(proj, {})
            if sorted(experts) != list(range(len(experts))) or not experts:
                raise ValueError(f"{prefix}: the {proj} matrices of experts {sorted(experts)} are not 0..E-1")
            return torch.stack([experts[e] for e in range(len(experts))])

        fused[f"{prefix}.gate_up_proj"] = torch.cat([stacked("gate_proj"), stacked("up_proj")], dim=1)
        fused[f"{prefix}.down_proj"] = stacked("down_proj")
    return fused


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
