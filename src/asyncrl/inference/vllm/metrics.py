"""vLLM's own Prometheus figures, read into the ones asyncrl's `/metrics` reports for every backend."""

from __future__ import annotations

from dataclasses import dataclass

# vLLM metric -> field of VLLMFigures. Counters and histograms of one engine; labelled series are summed.
WANTED = {
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:generation_tokens_total": "tokens_generated",
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:request_success_total": "requests_finished",
    "vllm:iteration_tokens_total_sum": "step_tokens",
    "vllm:iteration_tokens_total_count": "steps",
}


@dataclass
class VLLMFigures:
    waiting: float = 0.0
    kv_cache_usage: float = 0.0
    tokens_generated: float = 0.0
    prompt_tokens: float = 0.0
    requests_finished: float = 0.0
    """Requests (asyncrl: choices) ended for any reason, aborts included."""
    step_tokens: float = 0.0
    steps: float = 0.0

    @property
    def batch_size_mean(self) -> float:
        """Tokens per engine step: the decode batch, plus prompt tokens in steps that prefill."""
        return self.step_tokens / self.steps if self.steps else 0.0


def read_figures(text: str) -> VLLMFigures:
    """The figures in a Prometheus exposition of vLLM's; a plain scan, since the whole text (every
    histogram bucket) is read once a second."""
    totals = dict.fromkeys(WANTED.values(), 0.0)
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        field = WANTED.get(name)
        if field is not None:
            try:
                totals[field] += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return VLLMFigures(**totals)
