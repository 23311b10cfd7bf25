"""Does TOPLOC catch tampered rollouts, and does it ever fail honest ones? One run, both built-in models.

For each model (`tiny`, random weights, and `tiny-reverse-text`, trained) and each prover precision
(float32, bfloat16), the built-in engine generates `--rollouts` honest rollouts with proofs at temperature
1, which the verifier (float32, this CPU) checks: every failure is a false positive. Then, on up to 64
rollouts longer than one chunk, the tamper classes: every position of `--swept` rollouts with every other
token of the vocabulary substituted there, one random substitute at every position of the rest, two
adjacent tokens swapped, a token dropped or inserted, a chunk's proof copied from another rollout, a
prompt token substituted, and the rollouts of the other model claimed for this one. Each row: how many
tampered rollouts were caught (any failed check); the honest rows add the worst token's distance (ulps,
see asyncrl.toploc.chunk_check), the substitution rows the position caught least often.

    .venv/bin/python benchmarks/toploc_tamper.py [--rollouts 1024] [--swept 1] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from toploc_overhead import generate

from asyncrl.builtin_models import warm_model_dir
from asyncrl.models import tiny_model_dir
from asyncrl.toploc.config import ToplocConfig
from asyncrl.toploc.rollouts import Rollout
from asyncrl.toploc.verify import ReferenceModel, verify_rollouts

CONFIG = ToplocConfig()
CHUNK = 32


def honest_rollouts(args: argparse.Namespace, model: str, dtype: str, seed: int) -> list[Rollout]:
    rng = random.Random(seed)
    prompts = [[rng.randrange(32, 127) for _ in range(rng.randint(8, 48))] for _ in range(args.rollouts)]
    run = argparse.Namespace(
        model=model, dtype=dtype, inflight=64, threads=args.threads, max_tokens=args.max_tokens
    )
    return asyncio.run(generate(run, prompts, toploc=True))[2]


def caught(reference: ReferenceModel, rollouts: list[Rollout]) -> list[bool]:
    return [not v.passed for v in verify_rollouts(reference, rollouts, CONFIG)]


def with_tokens(rollout: Rollout, tokens: list[int]) -> Rollout:
    return rollout.model_copy(update={"token_ids": tokens})


def substitutions(
    full: list[Rollout], swept: int, vocab: int, rng: random.Random
) -> tuple[list[Rollout], list[int]]:
    """Every substitute at every position of the first `swept` rollouts, one random substitute at every
    position of the others; and the position of each."""
    forged, positions = [], []
    for n, rollout in enumerate(full):
        for i, token in enumerate(rollout.token_ids):
            substitutes = (
                [t for t in range(vocab) if t != token]
                if n < swept
                else [rng.choice([t for t in range(vocab) if t != token])]
            )
            for substitute in substitutes:
                ids = list(rollout.token_ids)
                ids[i] = substitute
                forged.append(with_tokens(rollout, ids))
                positions.append(i)
    return forged, positions


def other_classes(
    full: list[Rollout], other_model: list[Rollout], vocab: int, rng: random.Random
) -> dict[str, list[Rollout]]:
    def each(change: Callable[[Rollout], Rollout | None]) -> list[Rollout]:
        return [r for r in (change(x) for x in full) if r is not None]

    def swap_adjacent(r: Rollout) -> Rollout | None:
        i = rng.randrange(len(r.token_ids) - 1)
        ids = list(r.token_ids)
        ids[i], ids[i + 1] = ids[i + 1], ids[i]
        return changed(r, ids)

    def changed(r: Rollout, ids: list[int]) -> Rollout | None:
        """None when the edit gave back the same tokens (a token dropped from a run of equal ones)."""
        return None if ids == r.token_ids else with_tokens(r, ids)

    def drop(r: Rollout) -> Rollout | None:
        i = rng.randrange(len(r.token_ids) - 1)
        return changed(r, r.token_ids[:i] + r.token_ids[i + 1 :] + [r.token_ids[-1]])

    def insert(r: Rollout) -> Rollout | None:
        i = rng.randrange(len(r.token_ids))
        return changed(r, r.token_ids[:i] + [rng.randrange(vocab)] + r.token_ids[i:-1])

    def copied_proof(r: Rollout) -> Rollout:
        donor = rng.choice([d for d in full if d is not r])
        proofs = list(r.toploc_proofs)
        chunk = rng.randrange(len(proofs))
        proofs[chunk] = donor.toploc_proofs[chunk]
        return r.model_copy(update={"toploc_proofs": proofs})

    def prompt_token(r: Rollout) -> Rollout:
        ids = list(r.prompt_token_ids)
        i = rng.randrange(len(ids))
        ids[i] = rng.choice([t for t in range(32, 127) if t != ids[i]])
        return r.model_copy(update={"prompt_token_ids": ids})

    return {
        "two adjacent tokens swapped": each(swap_adjacent),
        "one token dropped (last repeated)": each(drop),
        "one token inserted (last cut)": each(insert),
        "one chunk's proof from another rollout": each(copied_proof),
        "one prompt token substituted": each(prompt_token),
        "generated by the other model": other_model,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=1024, help="honest rollouts per model and precision")
    parser.add_argument("--swept", type=int, default=1, help="rollouts tried with every substitute token")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    models = {"tiny": str(tiny_model_dir()), "tiny-reverse-text": str(warm_model_dir())}
    honest = {
        (name, dtype): honest_rollouts(args, path, dtype, args.seed + i)
        for i, (name, path) in enumerate(models.items())
        for dtype in ("float32", "bfloat16")
    }
    print(f"{'model':<18} {'prover':<9} {'tamper class':<42} {'caught':>15} {'rate':>8}")
    for name, path in models.items():
        reference = ReferenceModel.load(path, "float32")
        vocab = reference.model.config.vocab_size
        other = next(n for n in models if n != name)
        for dtype in ("float32", "bfloat16"):
            rollouts = honest[(name, dtype)]
            verdicts = verify_rollouts(reference, rollouts, CONFIG)
            false = sum(not v.passed for v in verdicts)
            worst = max(c.worst_ulps for v in verdicts for c in v.chunks)
            print(f"{name:<18} {dtype:<9} {'none (honest): false positives':<42} "
                  f"{f'{false} / {len(rollouts)}':>15} {false / len(rollouts):>8.2%}   "
                  f"worst token {worst} ulps")  # fmt: skip
            full = [r for r in rollouts if len(r.token_ids) > CHUNK][:64]
            forged, positions = substitutions(full, args.swept, vocab, rng)
            flags = caught(reference, forged)
            by_position: dict[int, list[bool]] = defaultdict(list)
            for position, flag in zip(positions, flags, strict=True):
                by_position[position].append(flag)
            worst = min(by_position, key=lambda p: sum(by_position[p]) / len(by_position[p]))
            worst_rate = sum(by_position[worst]) / len(by_position[worst])
            label = f"single-token substitution ({len(full)} rollouts)"
            print(f"{name:<18} {dtype:<9} {label:<42} {f'{sum(flags)} / {len(flags)}':>15} "
                  f"{sum(flags) / len(flags):>8.2%}   worst position {worst}: {worst_rate:.2%}")  # fmt: skip
            others = [r for r in honest[(other, dtype)] if len(r.token_ids) > CHUNK][:64]
            for label, tampered in other_classes(full, others, vocab, rng).items():
                flags = caught(reference, tampered)
                print(f"{name:<18} {dtype:<9} {label:<42} {f'{sum(flags)} / {len(flags)}':>15} "
                      f"{sum(flags) / len(flags):>8.2%}")  # fmt: skip
    print(f"\n{args.max_tokens} tokens a rollout, chunks of {CHUNK}, verifier float32 on cpu; "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
