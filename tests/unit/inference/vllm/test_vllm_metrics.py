"""vLLM's Prometheus text read into the figures every backend reports."""

from __future__ import annotations

from asyncrl.inference.vllm.metrics import read_figures

EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 1.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:generation_tokens_total{engine="0",model_name="m"} 1200.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e+09
vllm:prompt_tokens_total{engine="0",model_name="m"} 300.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 4.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 5.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 1.0
vllm:iteration_tokens_total_bucket{engine="0",le="1.0",model_name="m"} 2.0
vllm:iteration_tokens_total_sum{engine="0",model_name="m"} 900.0
vllm:iteration_tokens_total_count{engine="0",model_name="m"} 300.0
process_cpu_seconds_total 12.0
"""


def test_figures_sum_labelled_series_and_skip_the_rest():
    figures = read_figures(EXPOSITION)
    assert (figures.waiting, figures.kv_cache_usage) == (1.0, 0.25)
    assert (figures.tokens_generated, figures.prompt_tokens) == (1200.0, 300.0)
    assert figures.requests_finished == 10.0
    assert figures.batch_size_mean == 3.0


def test_an_engine_that_has_not_stepped_has_no_batch_size():
    assert read_figures("").batch_size_mean == 0.0
