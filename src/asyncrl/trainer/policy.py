"""The trainer's forward pass: a packed micro-batch in, each position's target logprob and entropy out.

The decoder runs with asyncrl's packed attention (asyncrl.trainer.attention); the LM head is applied a
block of positions at a time (asyncrl.trainer.logprobs), so neither an [L, L] mask nor a full-vocabulary
logits tensor is ever materialised. Under FSDP2 the pass is registered as a forward method of the root
module, so the root's parameters (embeddings, final norm, head) are gathered for it and their gradients
reduced after it, as for `forward`.
"""

from __future__ import annotations

from types import MethodType

import torch
from torch.distributed.fsdp import register_fsdp_forward_method
from transformers import PreTrainedModel

from asyncrl.models import ModelLoadError
from asyncrl.trainer import attention
from asyncrl.trainer.logprobs import chunked_logprobs
from asyncrl.trainer.packing import MicroBatch

SHARDED_METHOD = "asyncrl_logprobs"
SCALED_LOGITS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
"""Config fields of architectures whose logits are not the plain head's output."""


class UnsupportedHeadError(ModelLoadError):
    """The model's logits are not a plain linear head over the last hidden state."""


def check_head(model: PreTrainedModel) -> None:
    """Refuse models whose logits the blockwise head would compute wrong."""
    head = model.get_output_embeddings()
    scaled = [name for name in SCALED_LOGITS if getattr(model.config, name, None) not in (None, 1.0)]
    if not isinstance(head, torch.nn.Linear) or scaled:
        raise UnsupportedHeadError(
            f"the trainer computes logprobs from a plain linear LM head; {model.config.model_type!r} "
            f"scales or caps its logits ({', '.join(scaled) or type(head).__name__})"
        )


def _logprobs(model: PreTrainedModel, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
    if model.config._attn_implementation != attention.NAME:
        model.set_attn_implementation(attention.NAME)
    layout = attention.PackedLayout(mb.unit_ids, mb.branch_ids)
    hidden = model.get_decoder()(
        input_ids=mb.input_ids,
        position_ids=mb.position_ids,
        attention_mask=attention.SKIP_MASK.to(mb.input_ids.device),
        packed_layout=layout,
        use_cache=False,
    ).last_hidden_state
    head = model.get_output_embeddings()
    return chunked_logprobs(hidden.flatten(0, 1), head, mb.target_ids, mb.temperatures)


def forward_logprobs(model: PreTrainedModel, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Logprob of each position's target token under logits / temperature (with grad), and the entropy
    (no grad) of that distribution; both [R*L] float32."""
    sharded = getattr(model, SHARDED_METHOD, None)
    return sharded(mb) if sharded is not None else _logprobs(model, mb)


def register_sharded(model: PreTrainedModel) -> None:
    """Make forward_logprobs an FSDP2 forward of the (already sharded) root module."""
    setattr(model, SHARDED_METHOD, MethodType(_logprobs, model))
    register_fsdp_forward_method(model, SHARDED_METHOD)
