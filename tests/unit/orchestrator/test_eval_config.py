"""`[[orchestrator.eval]]`: how a user writes evals during training, and the mistakes it refuses."""

from __future__ import annotations

import pytest

from asyncrl.config import ConfigError, load_config
from asyncrl.config_loader import to_toml
from asyncrl.launcher.config import RLConfig

EVALS = """
[[orchestrator.eval]]
env.args = { split = "test" }
interval = 20
num_examples = 64

[orchestrator.eval.sampling]
temperature = 0.0

[[orchestrator.eval]]
name = "arithmetic-pass"
env.name = "arithmetic"
k = 4
"""


def _load(tmp_path, text: str, *overrides: str) -> RLConfig:
    path = tmp_path / "evals.toml"
    path.write_text(text)
    return load_config(RLConfig, ["-c", str(path), *overrides])


def test_evals_are_tables_labelled_by_their_env_unless_named(tmp_path):
    held_out, arithmetic = _load(tmp_path, EVALS).orchestrator.eval
    assert (held_out.label, held_out.env.args, held_out.interval, held_out.k) == (
        "reverse-text", {"split": "test"}, 20, 1,
    )  # fmt: skip
    assert held_out.sampling.temperature == 0.0 and held_out.sampling.max_tokens == 128
    assert (arithmetic.label, arithmetic.k, arithmetic.pass_threshold) == ("arithmetic-pass", 4, 1.0)
    assert load_config(RLConfig, []).orchestrator.eval == []


def test_evals_survive_the_config_files_the_launcher_writes_for_its_children(tmp_path):
    config = _load(tmp_path, EVALS)
    assert _load(tmp_path, to_toml(config)) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[orchestrator.eval]]\ninterval = 0\n", "orchestrator.eval.0.interval: Input should be greater"),
        ("[[orchestrator.eval]]\nk = 0\n", "orchestrator.eval.0.k: Input should be greater"),
        ("[[orchestrator.eval]]\nnum_examples = 0\n", "orchestrator.eval.0.num_examples: Input should be"),
        ("[[orchestrator.eval]]\nname = 'held/out'\n", "give one without '/' or spaces, not 'held/out'"),
        ("[[orchestrator.eval]]\nk = 4\nsampling.temperature = 0\n", "k = 4 greedy rollouts"),
        ("[[orchestrator.eval]]\n[[orchestrator.eval]]\n", "two evals are labelled reverse-text: give each"),
        ("[[orchestrator.eval]]\nintervals = 2\n", "did you mean 'orchestrator.eval.0.interval'"),
    ],
)
def test_a_bad_eval_is_refused_with_the_key_and_what_to_do(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        _load(tmp_path, text)
