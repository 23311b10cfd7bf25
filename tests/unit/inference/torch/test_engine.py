"""The torch engine in-process: scheduling, aborts, queueing and reproducibility on the tiny model."""

from __future__ import annotations

import asyncio
import base64

import pytest
import torch

from asyncrl.inference.backend import EngineDeadError, InvalidRequestError, SamplingParams
from asyncrl.inference.config import InferenceConfig
from asyncrl.inference.torch.engine import TorchEngine, _Request, _Sequence
from asyncrl.inference.torch.kv_cache import SlotKVCache


def run(coro):
    return asyncio.run(coro)


async def _started(**config) -> TorchEngine:
    engine = TorchEngine("tiny", "float32", InferenceConfig(**config))
    await engine.start()
    return engine


async def _generate(engine: TorchEngine, prompt: list[int], n: int = 1, **params) -> list[list[int]]:
    choices: list[list[int]] = [[] for _ in range(n)]
    async for delta in engine.generate(prompt, SamplingParams(**params), n=n):
        choices[delta.index] += delta.token_ids
    return choices


def test_more_requests_than_rows_queue_and_all_finish():
    async def main():
        engine = await _started(max_num_seqs=3)
        outs = await asyncio.gather(
            *(_generate(engine, list(b"queue %d" % i), max_tokens=10, ignore_eos=True) for i in range(10))
        )
        stats = engine.stats()
        await engine.stop()
        return outs, stats

    outs, stats = run(main())
    assert all(len(o[0]) == 10 for o in outs)
    assert stats.running == 0 and stats.waiting == 0
    assert stats.batch_size_mean <= 3


def test_greedy_output_does_not_depend_on_batch_neighbours():
    async def main():
        engine = await _started()
        alone = await _generate(engine, list(b"same prompt"), max_tokens=30, temperature=0)
        crowd = await asyncio.gather(
            *(
                _generate(engine, list(b"other %d" % i * (i + 1)), max_tokens=40, temperature=0)
                for i in range(8)
            ),
            _generate(engine, list(b"same prompt"), max_tokens=30, temperature=0),
        )
        await engine.stop()
        return alone, crowd[-1]

    alone, crowded = run(main())
    assert alone == crowded


def test_seeded_choices_are_reproducible_and_distinct():
    async def main():
        engine = await _started()
        first = await _generate(
            engine, list(b"seed"), n=3, max_tokens=20, temperature=1.0, seed=5, ignore_eos=True
        )
        again = await _generate(
            engine, list(b"seed"), n=3, max_tokens=20, temperature=1.0, seed=5, ignore_eos=True
        )
        await engine.stop()
        return first, again

    first, again = run(main())
    assert first == again
    assert len({tuple(c) for c in first}) == 3


def test_closing_the_stream_aborts_the_request_and_frees_its_rows():
    async def main():
        engine = await _started()
        stream = engine.generate(list(b"abort me"), SamplingParams(max_tokens=1000, ignore_eos=True), 2, True)
        async for _ in stream:
            break
        await stream.aclose()
        for _ in range(100):
            if engine.stats().running == 0:
                break
            await asyncio.sleep(0.02)
        stats = engine.stats()
        await engine.stop()
        return stats

    stats = run(main())
    assert stats.running == 0
    assert stats.tokens_generated < 2000


def test_max_tokens_and_context_window_end_a_sequence_with_length():
    async def main():
        engine = await _started(max_model_len=40)
        deltas = [
            d async for d in engine.generate(list(range(30)), SamplingParams(max_tokens=100, ignore_eos=True))
        ]
        await engine.stop()
        return deltas

    deltas = run(main())
    assert deltas[-1].finish_reason == "length"
    assert len(deltas[-1].token_ids) == 10  # 30 prompt + 10 completion fill the 40-token window


def test_n_beyond_the_batch_rows_is_refused():
    async def main():
        engine = await _started(max_num_seqs=2)
        try:
            with pytest.raises(InvalidRequestError, match="max_num_seqs"):
                await _generate(engine, [1, 2], n=3, max_tokens=2)
        finally:
            await engine.stop()

    run(main())


def test_a_stopped_engine_refuses_work():
    async def main():
        engine = await _started()
        await engine.stop()
        with pytest.raises(EngineDeadError):
            await _generate(engine, [1, 2], max_tokens=2)

    run(main())


def test_a_huge_seed_is_served_and_the_engine_lives_on():
    async def main():
        engine = await _started()
        outs = [await _generate(engine, [1, 2], max_tokens=3, seed=seed) for seed in (10**18, -(10**19))]
        stats = engine.stats()
        await engine.stop()
        return outs, stats

    outs, stats = run(main())
    assert all(len(o[0]) == 3 for o in outs)
    assert stats.running == 0


def test_prefill_budget_counts_padding():
    async def main():
        engine = await _started(max_prefill_tokens=256)
        shapes = []
        forward = engine.runner.forward

        def recording(tokens, *args, **kwargs):
            shapes.append(tuple(tokens.shape))
            return forward(tokens, *args, **kwargs)

        engine.runner.forward = recording
        prompts = [list(range(1, 201))] + [[5, 6, i] for i in range(10)]
        await asyncio.gather(*(_generate(engine, p, max_tokens=2) for p in prompts))
        await engine.stop()
        return shapes

    prefills = [(rows, width) for rows, width in run(main()) if width > 1]
    assert sum(rows for rows, _ in prefills) == 11
    assert all(rows * width <= 256 or rows == 1 for rows, width in prefills)


def test_requests_with_one_prompt_share_one_prefill_row():
    async def main():
        engine = TorchEngine("tiny", "float32", InferenceConfig())  # not started: _prefill runs right here
        rows = []
        forward = engine.runner.forward

        def recording(tokens, *args, **kwargs):
            rows.append(tokens.shape[0])
            return forward(tokens, *args, **kwargs)

        engine.runner.forward = recording
        loop = asyncio.get_running_loop()
        prompts = [list(b"group prompt")] * 4 + [list(b"another")]
        engine._prefill(
            [_Request(p, SamplingParams(max_tokens=4), 1, False, loop, asyncio.Queue()) for p in prompts]
        )
        return engine, rows

    engine, rows = run(main())
    assert rows == [2]
    assert [s.request.prompt for s in engine._running] == [list(b"group prompt"), list(b"another")] + [
        list(b"group prompt")
    ] * 3
    k = engine.runner.cache.k[:, :5, :, :12]
    assert all(torch.equal(k[:, 0], k[:, row]) for row in (2, 3, 4))


def test_requests_sharing_a_prompt_sample_as_if_alone():
    async def main():
        engine = await _started()
        params = dict(max_tokens=12, temperature=1.0, ignore_eos=True)
        alone = [await _generate(engine, list(b"group prompt"), seed=s, **params) for s in range(4)]
        together = await asyncio.gather(
            *(_generate(engine, list(b"group prompt"), seed=s, **params) for s in range(4))
        )
        await engine.stop()
        return alone, together

    alone, together = run(main())
    assert together == alone
    assert len({tuple(choices[0]) for choices in alone}) == 4


def test_stop_strings_of_multi_byte_characters_end_the_sequence():
    engine = TorchEngine("tiny", "float32", InferenceConfig())
    stop = "\U0001f600" * 3  # 3 characters, 12 byte tokens
    request = _Request([1], SamplingParams(max_tokens=100, stop=(stop,)), 1, False, None, None)
    sequence = _Sequence(request, 0, cache_len=1, generator=None)
    sequence.token_ids = list(b"ab") + list(stop.encode())
    assert engine._finish_reason(sequence, sequence.token_ids[-1]) == "stop"


def test_toploc_proofs_come_one_per_chunk_only_to_requests_that_ask():
    async def main():
        engine = await _started(max_num_seqs=4)  # fewer rows than sequences: rows are compacted and reused

        async def run(params: SamplingParams, n: int = 1, stream: bool = False):
            proofs: list[list[str]] = [[] for _ in range(n)]
            deltas = []
            async for delta in engine.generate(list(b"prove it"), params, n=n, stream=stream):
                proofs[delta.index] += delta.toploc_proofs
                deltas.append((len(delta.token_ids), len(delta.toploc_proofs)))
            return proofs, deltas

        outs = await asyncio.gather(
            run(SamplingParams(max_tokens=70, ignore_eos=True, toploc=True), n=2),
            run(SamplingParams(max_tokens=70, ignore_eos=True)),
            run(SamplingParams(max_tokens=33, ignore_eos=True, toploc=True), stream=True),
            *(run(SamplingParams(max_tokens=3 + i, ignore_eos=True, toploc=True)) for i in range(4)),
        )
        await engine.stop()
        return outs

    (both, _), (plain, _), (streamed, stream_deltas), *short = run(main())
    assert [len(p) for p in both] == [3, 3] and both[0] != both[1]
    assert plain == [[]]
    assert len(streamed[0]) == 2
    proof_at = [i for i, (_, proofs) in enumerate(stream_deltas) if proofs]
    assert proof_at == [31, 32]  # the deltas with the 32nd and the 33rd (last) token
    assert [len(p[0]) for p, _ in short] == [1, 1, 1, 1]
    assert all(len(base64.b64decode(p)) == 260 for p in both[0] + streamed[0])


def test_cache_memory_not_yet_written_holds_zeros(monkeypatch):
    """A decode step reads every row up to the batch's longest; a masked position's value still meets a
    zero weight, and 0 x NaN is NaN, so recycled memory holding NaN bits must never be read."""
    empty = torch.empty

    def recycled(*args, **kwargs):
        return empty(*args, **kwargs).fill_(float("nan"))

    monkeypatch.setattr(torch, "empty", recycled)
    cache = SlotKVCache(n_layers=2, n_slots=3, n_kv_heads=2, head_dim=4, max_len=600, dtype=torch.bfloat16)
    cache.k[:, 0, :, :10] = 1.0
    cache.ensure_capacity(300)
    assert cache.capacity >= 300
    assert not cache.k.isnan().any() and not cache.v.isnan().any()
    assert cache.k[:, 0, :, :10].eq(1).all() and cache.k[:, :, :, 10:].eq(0).all()
