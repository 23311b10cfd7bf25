"""The forward pass of a Llama-family decoder (dense, or GLM-4.5 / Qwen3 MoE) over the slot KV cache, built
from the HF model's own modules.

The HF forward is general but costs a lot of Python per call (mask building, cache objects); on small
models that overhead dominates a decode step. Here one step is a short straight line of tensor ops per
layer, reusing the loaded modules' weights, so a weight swap on the HF model is seen at once. MoE layers
run their HF block as is (routing batched over the step's tokens, experts looped, not tokens); a hook on
each router records the experts it chose, which the engine hands out for router replay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from asyncrl.inference.torch.kv_cache import SlotKVCache
from asyncrl.models import ModelLoadError
from asyncrl.moe import MOE_MODEL_TYPES, RoutingRecorder, moe_shape

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", *MOE_MODEL_TYPES)


class UnsupportedModelError(ModelLoadError):
    """The torch engine does not implement this architecture."""


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on the first cos.shape[-1] dims of each head (all of them, but for GLM's partial rotary)."""
    width = cos.shape[-1]
    if width == x.shape[-1]:
        return x * cos + _rotate_half(x) * sin
    rotated, passed = x[..., :width], x[..., width:]
    return torch.cat((rotated * cos + _rotate_half(rotated) * sin, passed), dim=-1)


class ModelRunner:
    """Runs token rows of a batch at given positions, writing their keys/values into cache rows."""

    def __init__(self, model: PreTrainedModel, max_len: int, n_slots: int) -> None:
        config = model.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"the torch engine runs {', '.join(SUPPORTED_MODEL_TYPES)} models, "
                f"not {config.model_type!r} ({config.name_or_path})"
            )
        if getattr(config, "use_sliding_window", False):
            raise UnsupportedModelError(
                "sliding-window attention is not supported by the torch engine; use vllm"
            )
        self.model = model
        self.decoder = model.model
        self.layers = list(self.decoder.layers)
        attn = self.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.scaling = attn.scaling
        self.eps = config.rms_norm_eps
        self.has_qk_norm = hasattr(attn, "q_norm")
        self.device = model.device
        self.moe = moe_shape(model)
        self._routing = RoutingRecorder(model) if self.moe else None
        self.cache = SlotKVCache(
            len(self.layers), n_slots, self.n_kv_heads, self.head_dim, max_len, model.dtype, self.device
        )

    def _norm(self, x: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), module.weight, self.eps)

    @torch.inference_mode()
    def forward(
        self,
        token_ids: torch.Tensor,
        positions: torch.Tensor,
        row_start: int,
        last: torch.Tensor,
        attn_len: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run `token_ids` [R, T] at `positions` [R, T] in cache rows row_start..row_start+R-1 and return
        the logits [R, V] of each row's token at index `last` [R], the last hidden states [R, H] they
        came from (after the final norm: what TOPLOC proofs commit to), and for MoE models the experts
        [R, MoE layers, k] each layer routed that token to (None for dense ones). All on the model's device.

        Each query attends to the cached keys of its row at positions <= its own, which covers both
        prefill (right-padded rows; padding is never read back) and one-token decode steps. `attn_len`
        (the largest position + 1) comes from the caller, who knows it without asking the device.
        """
        rows, steps = token_ids.shape
        if self._routing is not None:
            self._routing.take()  # what a forward that raised midway left behind
        self.cache.ensure_capacity(attn_len)
        row_index = torch.arange(rows, device=self.device).unsqueeze(1).expand(rows, steps)
        key_positions = torch.arange(attn_len, device=self.device)
        mask = key_positions.view(1, 1, 1, -1) <= positions.view(rows, 1, steps, 1)

        h = self.decoder.embed_tokens(token_ids)
        cos, sin = self.decoder.rotary_emb(h, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            x = self._norm(h, layer.input_layernorm)
            q = attn.q_proj(x).view(rows, steps, self.n_heads, self.head_dim)
            k = attn.k_proj(x).view(rows, steps, self.n_kv_heads, self.head_dim)
            v = attn.v_proj(x).view(rows, steps, self.n_kv_heads, self.head_dim)
            if self.has_qk_norm:
                q, k = self._norm(q, attn.q_norm), self._norm(k, attn.k_norm)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)

            k_cache = self.cache.k[i, row_start : row_start + rows]
            v_cache = self.cache.v[i, row_start : row_start + rows]
            k_cache[row_index, :, positions] = k.transpose(1, 2)
            v_cache[row_index, :, positions] = v.transpose(1, 2)
            out = F.scaled_dot_product_attention(
                q,
                k_cache[:, :, :attn_len],
                v_cache[:, :, :attn_len],
                attn_mask=mask,
                scale=self.scaling,
                enable_gqa=self.n_kv_heads != self.n_heads,
            )
            h = h + attn.o_proj(out.transpose(1, 2).reshape(rows, steps, -1))
            h = h + layer.mlp(self._norm(h, layer.post_attention_layernorm))
        picked = torch.arange(rows, device=self.device)
        h = self._norm(h[picked, last], self.decoder.norm)
        return self.model.lm_head(h), h, self._routed(rows, steps, picked, last)

    def _routed(self, rows: int, steps: int, picked: torch.Tensor, last: torch.Tensor) -> torch.Tensor | None:
        if self._routing is None:
            return None
        chosen = torch.stack([c.view(rows, steps, -1) for c in self._routing.take()], dim=2)
        return chosen[picked, last]
