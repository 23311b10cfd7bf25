"""`asyncrl toploc verify --model DIR --rollouts FILE`: a table of verdicts; exit 0 when every rollout
passes, 1 otherwise (a malformed rollouts file too)."""

from __future__ import annotations

from asyncrl.toploc.config import VerifyCommandConfig
from asyncrl.toploc.verify import ReferenceModel, Verdict, verify_rollouts


def verify_file(config: VerifyCommandConfig) -> int:
    from asyncrl.toploc.rollouts import read_rollouts

    assert config.rollouts is not None  # the command's check
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
    rows = [_row("line", "verdict", "chunks", "worst chunk: bad tokens / ulps / median", "z", "reasons")]
    for line, verdict in zip(lines, verdicts, strict=True):
        worst = "-"
        if verdict.chunks:
            chunk = max(verdict.chunks, key=lambda c: (c.bad_positions, c.worst_ulps, c.median_ulps))
            worst = f"{chunk.bad_positions} / {chunk.worst_ulps} / {chunk.median_ulps:g}"
        z = f"{verdict.sampling.z:+.2f}" if verdict.sampling else "-"
        status = "PASS" if verdict.passed else "FAIL"
        rows.append(_row(str(line), status, str(len(verdict.chunks)), worst, z, "; ".join(verdict.reasons)))
    return "\n".join(rows)


def _row(line: str, status: str, chunks: str, worst: str, z: str, reasons: str) -> str:
    return f"{line:>6}  {status:<7}  {chunks:>6}  {worst:<37}  {z:>6}  {reasons}".rstrip()
