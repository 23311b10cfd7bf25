"""Prometheus figures of the engine, read from its stats at scrape time (no work on the decode path)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from asyncrl.inference.backend import Backend


class EngineCollector:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        s = self.backend.stats()
        counters = {
            "generation_tokens": ("Tokens generated.", s.tokens_generated),
            "prompt_tokens": ("Prompt tokens prefilled.", s.prompt_tokens),
            "sequences_finished": ("Sequences (choices) finished or aborted.", s.requests_finished),
            "weight_updates": ("Weight updates applied.", s.weight_updates),
        }
        seconds = {
            "prefill_seconds": ("Seconds spent prefilling.", s.prefill_s),
            "decode_seconds": ("Seconds spent in decode steps.", s.decode_s),
            "engine_seconds": ("Seconds since the engine started.", s.uptime_s),
        }
        counters |= {name: figure for name, figure in seconds.items() if figure[1] is not None}
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"asyncrl_{name}", doc, value=value)
        gauges = {
            "requests_running": ("Sequences in the decode batch.", s.running),
            "requests_waiting": ("Sequences queued for a free batch row.", s.waiting),
            "batch_size_mean": ("Mean decode batch size since start.", s.batch_size_mean),
            "kv_cache_usage": (
                "Fraction of allocated KV-cache positions holding live tokens.",
                s.kv_cache_usage,
            ),
            "weight_version": ("Policy version of the weights now serving.", s.policy_version),
            "weight_update_seconds": ("Duration of the last weight update.", s.last_weight_update_s),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(f"asyncrl_{name}", doc, value=value)


def engine_registry(backend: Backend) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(EngineCollector(backend))
    return registry
