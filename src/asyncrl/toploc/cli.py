"""`asyncrl toploc verify --model DIR --rollouts FILE`: a table of verdicts; exit 0 when every rollout
passes, 1 otherwise (a malformed rollouts file too), 2 on a usage error."""

from __future__ import annotations

import sys
from pathlib import Path

from asyncrl.config import BaseConfig, ConfigError, ModelConfig, ToplocConfig, format_help, load_config
from asyncrl.toploc.verify import ReferenceModel, Verdict, verify_rollouts

USAGE = "usage: asyncrl toploc verify --model DIR --rollouts FILE [--model.dtype D] [--toploc.key VALUE ...]"


class VerifyCommandConfig(BaseConfig):
    """`asyncrl toploc verify`: check the TOPLOC proofs, sampling and endings of a rollouts file against the
    model the rollouts claim to come from."""

    rollouts: Path | None = None
    """JSON lines file, one rollout a line: prompt_token_ids, token_ids, toploc_proofs, temperature, top_p,
    max_tokens, finish_reason (and optionally the request's stop strings, stop)."""

    model: ModelConfig = ModelConfig()
    """The claimed model (required): `--model DIR` (or `tiny`); model.dtype is the precision of the
    recomputation."""

    toploc: ToplocConfig = ToplocConfig()
    """Chunk size and top-k of the proofs, and the thresholds of the checks."""


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command in ("-h", "--help"):
        print(USAGE)
        return 0
    if command != "verify":
        print(USAGE, file=sys.stderr)
        return 2
    if "-h" in rest or "--help" in rest:
        print(format_help(VerifyCommandConfig, "toploc verify"))
        return 0
    # `--model DIR` is short for `--model.path DIR`, which `--model.dtype` can then join.
    rest = ["--model.path" if arg == "--model" else arg for arg in rest]
    rest = [f"--model.path={arg[8:]}" if arg.startswith("--model=") else arg for arg in rest]
    try:
        config = load_config(VerifyCommandConfig, rest)
    except ConfigError as e:
        print(f"asyncrl toploc verify: config error: {e}", file=sys.stderr)
        return 2
    model_given = any(arg.startswith(("--model.path", "-c", "--config")) for arg in rest)
    given = {"rollouts": config.rollouts is not None, "model": model_given}
    for field, flag in (("rollouts", "the rollouts file with --rollouts FILE"),
                        ("model", "the claimed model with --model DIR")):  # fmt: skip
        if not given[field]:
            print(f"asyncrl toploc verify: give {flag}\n{USAGE}", file=sys.stderr)
            return 2
    return verify_file(config)


def verify_file(config: VerifyCommandConfig) -> int:
    from asyncrl.toploc.rollouts import read_rollouts

    assert config.rollouts is not None  # main() checked
    numbered = read_rollouts(config.rollouts)
    reference = ReferenceModel.load(config.model.path, config.model.dtype)
    verdicts = verify_rollouts(reference, [rollout for _, rollout in numbered], config.toploc)
    print(verdict_table([line for line, _ in numbered], verdicts))
    passed = sum(v.passed for v in verdicts)
    print(f"\n{passed} of {len(verdicts)} rollouts pass")
    return 0 if passed == len(verdicts) else 1


def verdict_table(lines: list[int], verdicts: list[Verdict]) -> str:
    """One row per rollout: its line, the verdict, its worst chunk's statistics, the sampling z, and why
    it fails."""
    rows = [_row("line", "verdict", "chunks", "worst chunk: exp / mant mean / median", "z", "reasons")]
    for line, verdict in zip(lines, verdicts, strict=True):
        worst = "-"
        if verdict.chunks:
            chunk = max(verdict.chunks, key=lambda c: (not c.passed, c.exp_mismatches, c.mant_err_mean))
            worst = f"{chunk.exp_mismatches} / {chunk.mant_err_mean:.2f} / {chunk.mant_err_median:g}"
        z = f"{verdict.sampling.z:+.2f}" if verdict.sampling else "-"
        status = "PASS" if verdict.passed else "FAIL"
        rows.append(_row(str(line), status, str(len(verdict.chunks)), worst, z, "; ".join(verdict.reasons)))
    return "\n".join(rows)


def _row(line: str, status: str, chunks: str, worst: str, z: str, reasons: str) -> str:
    return f"{line:>6}  {status:<7}  {chunks:>6}  {worst:<37}  {z:>6}  {reasons}".rstrip()
