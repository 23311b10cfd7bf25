"""`asyncrl toploc verify`: a table of verdicts; exit 0 when all pass, 1 when any fails or a line is
malformed, 2 on a usage error."""

from __future__ import annotations

import json

import pytest

from asyncrl.cli import main
from asyncrl.toploc.config import ProofConfig
from asyncrl.toploc.rollouts import write_rollouts
from tests.integration.toploc.engine_rollouts import generate, prompts


@pytest.fixture(scope="module")
def rollouts(tiny_dir):
    return generate(str(tiny_dir), prompts(4), max_tokens=40)


def test_all_honest_rollouts_exit_0_with_a_table(tmp_path, rollouts, capsys):
    path = tmp_path / "rollouts.jsonl"
    write_rollouts(path, rollouts)
    assert main(["toploc", "verify", "--model", "tiny", "--rollouts", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 4 and "FAIL" not in out
    assert "4 of 4 rollouts pass" in out
    # The documented usage: --model DIR with a --model.dtype beside it.
    assert (
        main(["toploc", "verify", "--model=tiny", "--model.dtype", "float32", "--rollouts", str(path)]) == 0
    )


def test_verifying_with_another_chunk_size_than_the_proofs_record_is_a_clear_error(
    tmp_path, rollouts, capsys
):
    path = tmp_path / "rollouts.jsonl"
    write_rollouts(path, rollouts)
    argv = ["toploc", "verify", "--model", "tiny", "--rollouts", str(path), "--toploc.chunk-size", "16"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "built with chunk_size 32, not the 16 asked for" in err and "--toploc.chunk-size 32" in err
    assert len(err.splitlines()) == 1


def test_proofs_built_with_another_chunk_size_verify_with_the_settings_they_record(
    tmp_path, tiny_dir, capsys
):
    small = generate(str(tiny_dir), prompts(2), max_tokens=40, proofs=ProofConfig(chunk_size=16, top_k=64))
    assert [len(r.toploc_proofs) for r in small] == [-(-len(r.token_ids) // 16) for r in small]
    path = tmp_path / "rollouts.jsonl"
    write_rollouts(path, small)
    assert main(["toploc", "verify", "--model", "tiny", "--rollouts", str(path)]) == 0
    assert "2 of 2 rollouts pass" in capsys.readouterr().out
    assert (
        main(["toploc", "verify", "--model", "tiny", "--rollouts", str(path), "--toploc.top-k", "128"]) == 1
    )
    assert "built with top_k 64, not the 128 asked for" in capsys.readouterr().err


def test_one_forged_rollout_exits_1_and_is_named_by_its_line(tmp_path, rollouts, capsys):
    proofs = [rollouts[2].toploc_proofs[0], *rollouts[1].toploc_proofs[1:]]
    forged = rollouts[1].model_copy(update={"toploc_proofs": proofs})
    path = tmp_path / "rollouts.jsonl"
    write_rollouts(path, [rollouts[0], forged, rollouts[3]])
    assert main(["toploc", "verify", "--model", "tiny", "--rollouts", str(path)]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAIL" in line]
    assert len(failed) == 1 and failed[0].split()[0] == "2" and "TOPLOC" in failed[0]


def test_a_malformed_line_exits_1_naming_its_line(tmp_path, rollouts, capsys):
    path = tmp_path / "rollouts.jsonl"
    write_rollouts(path, rollouts[:2])
    with open(path, "a") as f:
        f.write(json.dumps({**rollouts[0].model_dump(), "top_p": 3}) + "\n")
    assert main(["toploc", "verify", "--model", "tiny", "--rollouts", str(path)]) == 1
    assert "line 3: top_p" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["toploc"],
        ["toploc", "check"],
        ["toploc", "verify", "--model", "tiny"],
        ["toploc", "verify", "--rollouts", "r.jsonl"],  # no model: never a silent default
        ["toploc", "verify", "--nope", "1"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: asyncrl toploc verify" in err or "config error: unknown key 'nope'" in err
