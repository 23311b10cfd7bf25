"""asyncrl's extension of vLLM's worker: reloading weights in place, tied LM heads included.

This module runs inside vLLM's worker processes, mixed into vLLM's Worker class (`--worker-extension-cls`),
where it is imported as the top-level module `asyncrl_vllm_worker` (see vllm/launch.py): vLLM may run in an
environment of its own, so nothing here imports asyncrl.
"""

from __future__ import annotations

from typing import Any


class WeightReloadExtension:
    """Methods `collective_rpc` can call on every worker; `self` is vLLM's Worker."""

    model_runner: Any
    vllm_config: Any
    reload_weights: Any

    def asyncrl_output_lengths(self) -> dict[str, int] | None:
        """Tokens generated so far by each request this worker holds. Asked while generation is paused:
        exactly the tokens the weights before an update produced. None from a model runner that keeps no
        per-request token lists (vLLM's second-generation GPU runner)."""
        requests = getattr(self.model_runner, "requests", None)
        if requests is None:
            return None
        return {req_id: len(state.output_token_ids) for req_id, state in requests.items()}

    def asyncrl_reload_weights(self, weights_path: str) -> None:
        """vLLM's in-place reload of an HF weights dir, then a refresh of a tied LM head.

        With tied embeddings the checkpoint has no `lm_head.weight`; the reload writes the new embedding
        into the tensor the head shares, but on CPU the head computes with a packed copy of it made at
        load time, which would go on serving the old weights."""
        from vllm.config import set_current_vllm_config

        self.reload_weights(weights_path=weights_path)
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        embed = getattr(getattr(model, "model", None), "embed_tokens", None)
        if head is None or embed is None or head.weight.data_ptr() != embed.weight.data_ptr():
            return
        with set_current_vllm_config(self.vllm_config):
            head.quant_method.process_weights_after_loading(head)
