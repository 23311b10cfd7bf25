"""Mixture-of-experts routing, seen from outside transformers' modules: which experts each token went to,
and making a forward go to given ones (router replay).

The engine records, for every generated token, the experts each MoE layer chose at the position that
produced it; the trainer's forward can then route those positions to the same experts, so its logprobs
are those of the computation inference actually did. Both work through forward hooks on the routers
(`mlp.gate` of GLM-4.5 / Qwen3-MoE layers), so the HF modules and FSDP2 stay untouched.

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


def check_routing(experts: torch.Tensor, shape: MoEShape) -> None:
    """ValueError unless `experts` [T, layers, k] is routing of a model of `shape`: its MoE layers and
    top-k, and each position's row wholly NOT_REPLAYED or wholly expert ids below num_experts."""
    expected = (len(shape.layers), shape.top_k)
    if tuple(experts.shape[1:]) != expected:
        raise ValueError(
            f"the routing has [MoE layers, k] = {list(experts.shape[1:])}, this model {list(expected)}: it "
            "was recorded by another model"
        )
    unset = experts == NOT_REPLAYED
    rows = unset.flatten(1)
    if not bool((rows.all(dim=1) | ~rows.any(dim=1)).all()):
        raise ValueError("the routing has positions with some experts recorded and some not")
    if bool(((experts < 0) & ~unset).any() | (experts >= shape.num_experts).any()):
        raise ValueError(f"the routing names experts outside 0..{shape.num_experts - 1}")


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
    """Positions whose routing inference recorded (summed over the MoE layers)."""
    differing_tokens: int = 0
    """Of those, the ones whose trainer-side top-k set differs from inference's."""
    expert_tokens: torch.Tensor | None = None
    """[MoE layers, experts] tokens routed to each expert (after replay, when replaying)."""


class RouterReplay:
    """Hooks on every router of a model: given the recorded experts of a forward's positions, measures
    where the model's own choice differs and, when `apply`, routes those positions to the recorded experts
    instead (see the module doc); optionally adds each router's load-balancing term (Switch Transformer's
    E * sum_e f_e * P_e).

    What `replaying` sets stays in force until `finish`, so a backward that recomputes layers (activation
    checkpointing) routes them as their forward did; figures are kept per layer and overwritten by a
    recompute, so it does not count twice, and the balance terms are taken from the forward alone. The
    figures stay on the device until `take_stats`: no host sync per layer."""

    def __init__(self, model: torch.nn.Module, apply: bool, balance: bool = False) -> None:
        found = routers(model)
        self._layer_of = {id(r): j for j, r in enumerate(found)}
        self.num_layers = len(found)
        self.num_experts = found[0].num_experts if found else 0
        self.apply = apply
        """Replay recorded routing (else only measure it)."""
        self.balance = balance
        """Compute the load-balancing terms (`take_balance_loss`)."""
        self._forced: torch.Tensor | None = None
        self._valid: torch.Tensor | None = None
        self._apply = False
        self._collecting = False
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._totals: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._balance_terms: dict[int, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = [r.register_forward_hook(self._route) for r in found]

    def replaying(self, forced: torch.Tensor | None, valid: torch.Tensor) -> None:
        """Route the next forward's flattened positions: `forced` [N, layers, k] the recorded experts
        (NOT_REPLAYED where none, None for no recording), `valid` [N] the positions that are tokens (not
        padding)."""
        self._fold()
        self._forced, self._valid, self._apply = forced, valid, self.apply and forced is not None
        self._balance_terms, self._collecting = {}, True

    def finish(self) -> None:
        """The step's forwards and backwards are done: later forwards route themselves, unmeasured."""
        self._fold()
        self._forced = self._valid = None
        self._apply = self._collecting = False

    def _route(self, router: torch.nn.Module, args: tuple, output: tuple) -> tuple | None:
        if self._valid is None:
            return None
        logits, _, own = output
        layer = self._layer_of[id(router)]
        weights = self._valid.to(own.device, torch.float32)
        recorded = differing = weights.new_zeros(())
        experts = own
        if self._forced is not None:
            forced = self._forced[:, layer].to(own.device, torch.long)
            replayed = forced[:, 0] != NOT_REPLAYED
            differs = (forced.sort(dim=1).values != own.sort(dim=1).values).any(dim=1) & replayed
            recorded, differing = replayed.sum(), differs.sum()
            if self._apply:
                experts = torch.where(replayed.unsqueeze(1), forced, own)
        per_choice = weights.repeat_interleave(experts.shape[1])
        counts = weights.new_zeros(router.num_experts).scatter_add_(0, experts.detach().flatten(), per_choice)
        self._pending[layer] = (recorded, differing, counts)
        if self.balance:  # in a recompute too: checkpointing wants the forward's ops again, not its terms
            probs = router_probabilities(router, logits)
            share = counts / per_choice.sum().clamp(min=1)
            mean_probs = (probs * weights.unsqueeze(1)).sum(dim=0) / weights.sum().clamp(min=1)
            term = router.num_experts * (share * mean_probs).sum()
            if self._collecting:
                self._balance_terms[layer] = term
        if not self._apply:
            return None
        return logits, gate_weights(router, logits, experts), experts

    def _fold(self) -> None:
        for layer, (recorded, differing, counts) in self._pending.items():
            if self._totals is None:
                zeros = counts.new_zeros(())
                self._totals = (zeros, zeros.clone(), counts.new_zeros(self.num_layers, self.num_experts))
            total_recorded, total_differing, total_counts = self._totals
            total_counts[layer] += counts
            self._totals = (total_recorded + recorded, total_differing + differing, total_counts)
        self._pending = {}

    def take_stats(self) -> RoutingStats:
        """The figures of every forward since the last call (one transfer to the host)."""
        self._fold()
        totals, self._totals = self._totals, None
        if totals is None:
            return RoutingStats()
        recorded, differing, counts = totals
        return RoutingStats(int(recorded), int(differing), counts.round().long().cpu())

    def take_balance_loss(self) -> torch.Tensor | None:
        """The mean load-balancing term of the last forward's routers (with grad), or None; a recompute
        in the backward adds none."""
        terms, self._balance_terms, self._collecting = self._balance_terms, {}, False
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
        count = 1 + max(max(experts) for experts in projections.values())
        for proj in ("gate_proj", "up_proj", "down_proj"):
            missing = sorted(set(range(count)) - set(projections.get(proj, {})))
            if missing:
                raise ValueError(f"{prefix}: no {proj} matrix for experts {missing} (of 0..{count - 1})")

        def stacked(proj: str, projections: dict = projections, count: int = count) -> torch.Tensor:
            return torch.stack([projections[proj][e] for e in range(count)])

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
    if len(shape) != 3 or min(shape) < 0 or len(raw) != shape[0] * shape[1] * shape[2] * dtype.itemsize:
        raise ValueError(f"routed_experts: {len(raw)} bytes do not hold a {shape} array of {dtype}")
    if not raw:
        return torch.zeros(shape, dtype=torch.int16)
    return torch.frombuffer(bytearray(raw), dtype=dtype).view(shape).to(torch.int16)
