import subprocess
import sys

import pytest

from asyncrl.config import BaseConfig, ConfigError, format_help, load_config
from asyncrl.inference.config import InferenceServerConfig


def test_defaults_come_from_the_fields():
    config = load_config(InferenceServerConfig, [])
    assert config.model.path == "tiny"
    assert config.inference.port == 8000


def test_overrides_accept_dashes_underscores_and_equals():
    config = load_config(
        InferenceServerConfig,
        ["--model.path", "some/dir", "--inference.max-num-seqs", "8", "--inference.max_prefill_tokens=99"],
    )
    assert config.model.path == "some/dir"
    assert config.inference.max_num_seqs == 8
    assert config.inference.max_prefill_tokens == 99


def test_a_numeric_looking_string_stays_a_string():
    config = load_config(
        InferenceServerConfig, ["--model.path", "123", "--inference.served-model-name", "007"]
    )
    assert config.model.path == "123"
    assert config.inference.served_model_name == "007"


def test_later_files_win_and_overrides_win_over_files(tmp_path):
    first = tmp_path / "a.toml"
    first.write_text('seed = 1\n[inference]\nport = 9001\nhost = "0.0.0.0"\n')
    second = tmp_path / "b.toml"
    second.write_text("[inference]\nport = 9002\n")
    config = load_config(InferenceServerConfig, ["-c", str(first), "--config", str(second), "--seed", "5"])
    assert config.inference.port == 9002
    assert config.inference.host == "0.0.0.0"
    assert config.seed == 5


def test_unknown_key_names_the_key_and_suggests_the_closest():
    with pytest.raises(
        ConfigError, match=r"unknown key 'inference.prot' \(did you mean 'inference.port'\?\)"
    ):
        load_config(InferenceServerConfig, ["--inference.prot", "1"])


def test_unknown_key_in_a_file_is_reported_with_its_path(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("[model]\npth = 'x'\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model.pth' \(did you mean 'model.path'\?\)"):
        load_config(InferenceServerConfig, ["-c", str(file)])


def test_wrong_type_names_the_key_and_the_value():
    with pytest.raises(ConfigError, match=r"inference.port: .*integer.*'abc'"):
        load_config(InferenceServerConfig, ["--inference.port", "abc"])


def test_out_of_range_value_is_rejected():
    with pytest.raises(ConfigError, match=r"inference.max_num_seqs: .*greater than or equal to 1"):
        load_config(InferenceServerConfig, ["--inference.max-num-seqs", "0"])


def test_missing_file_and_bad_toml_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(InferenceServerConfig, ["-c", str(tmp_path / "nope.toml")])
    bad = tmp_path / "bad.toml"
    bad.write_text("[inference\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(InferenceServerConfig, ["-c", str(bad)])


def test_option_without_value_is_an_error():
    with pytest.raises(ConfigError, match="needs a value"):
        load_config(InferenceServerConfig, ["--seed"])


def test_help_lists_every_field_with_doc_and_default():
    text = format_help(InferenceServerConfig, "asyncrl inference")
    for section in (
        InferenceServerConfig.model_fields["model"].annotation,
        InferenceServerConfig.model_fields["inference"].annotation,
    ):
        for name, field in section.model_fields.items():
            nested = isinstance(field.annotation, type) and issubclass(field.annotation, BaseConfig)
            assert (f".{name}]" if nested else f".{name} ") in text  # a section prints as [inference.name]
            assert field.description and field.description in text
    assert "(default: 8000)" in text


def test_cli_prints_a_one_line_error_and_exits_2_on_bad_config():
    result = subprocess.run(
        [sys.executable, "-m", "asyncrl.cli", "inference", "--inference.port", "x"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "inference.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_overriding_one_key_keeps_the_commands_own_section_defaults():
    from asyncrl.evals.config import EvalConfig
    from asyncrl.launcher.config import RLConfig

    config = load_config(EvalConfig, ["--inference.num-threads", "1"])
    assert config.inference.port == 0, "eval's server picks a free port unless told otherwise"
    rl = load_config(RLConfig, ["--trainer.optim.lr", "0.5"])
    assert rl.trainer.num_threads == 1 and rl.inference.num_threads == 1


def test_help_works_for_every_command():
    from asyncrl.cli import COMMANDS

    for name, command in COMMANDS.items():
        assert f"asyncrl {name}" in format_help(command.config, command.usage)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["rl"], ["--inference.num_threads INT  (default: 1)", "--trainer.num_threads INT  (default: 1)"]),
        (["eval"], ["--inference.port INT  (default: 0)"]),
    ],
)
def test_help_prints_the_defaults_the_command_really_uses(argv, expected, capsys):
    from asyncrl.cli import main

    assert main([*argv, "--help"]) == 0
    text = capsys.readouterr().out
    for line in expected:
        assert line in text


def test_rl_help_shows_the_default_jobs_settings(capsys):
    from asyncrl.cli import DEFAULT_JOB, main
    from asyncrl.launcher.config import RLConfig

    assert main(["rl", "--help"]) == 0
    text = capsys.readouterr().out
    job = load_config(RLConfig, ["-c", str(DEFAULT_JOB)])
    assert job.max_steps != RLConfig().max_steps, "the default job sets its own number of steps"
    assert f"--max_steps INT  (default: {job.max_steps})" in text


def test_rl_refuses_to_keep_fewer_weights_than_the_off_policy_window():
    from asyncrl.launcher.config import RLConfig

    with pytest.raises(ConfigError, match="trainer.retention.weights 2 keeps fewer"):
        load_config(
            RLConfig, ["--trainer.retention.weights", "2", "--orchestrator.max-off-policy-steps", "3"]
        )
    assert load_config(RLConfig, ["--trainer.retention.weights", "0"]).trainer.retention.weights == 0


def test_rl_refuses_router_replay_without_recorded_routing():
    from asyncrl.launcher.config import RLConfig

    with pytest.raises(ConfigError, match="set orchestrator.record_routing = true too"):
        load_config(RLConfig, ["--trainer.router-replay", "true"])
    both = ["--trainer.router-replay", "true", "--orchestrator.record-routing", "true"]
    assert load_config(RLConfig, both).trainer.router_replay


@pytest.mark.parametrize("source", ["verifiers", "verifiers-legacy"])
def test_recording_routing_or_toploc_checks_from_verifiers_episodes_are_refused(source):
    from asyncrl.orchestrator.config import OrchestratorConfig

    args = ["--env.source", source, "--env.name", "x"]
    with pytest.raises(ConfigError, match="record_routing needs asyncrl's own environments"):
        load_config(OrchestratorConfig, [*args, "--record-routing", "true"])
    with pytest.raises(ConfigError, match="TOPLOC checks .* need asyncrl's own environments"):
        load_config(OrchestratorConfig, [*args, "--verify.fraction", "0.5"])


def test_a_key_of_an_absent_section_turns_it_on_and_a_list_reads_where_a_string_would_too(tmp_path):
    from asyncrl.launcher.config import RLConfig

    assert load_config(RLConfig, []).model.lora is None
    lora = load_config(
        RLConfig, ["--model.lora.rank", "8", "--model.lora.target-modules", '["q_proj", "v_proj"]']
    )
    assert (lora.model.lora.rank, lora.model.lora.target_modules) == (8, ["q_proj", "v_proj"])
    assert lora.model.lora.alpha == 32.0, "the section's other keys keep their defaults"
    assert (
        load_config(RLConfig, ["--model.lora.target-modules", "all-linear"]).model.lora.target_modules
        == "all-linear"
    )
    config = tmp_path / "lora.toml"
    config.write_text("[model.lora]\nrank = 4\n")
    assert load_config(RLConfig, ["-c", str(config)]).model.lora.rank == 4


def test_a_config_file_can_include_another_and_change_a_few_keys(tmp_path):
    from asyncrl.launcher.config import RLConfig

    (tmp_path / "base.toml").write_text("max_steps = 7\n[orchestrator]\nbatch_size = 16\ngroup_size = 4\n")
    (tmp_path / "lora.toml").write_text('include = "base.toml"\n[orchestrator]\nbatch_size = 8\n')
    config = load_config(RLConfig, ["-c", str(tmp_path / "lora.toml")])
    assert (config.max_steps, config.orchestrator.batch_size, config.orchestrator.group_size) == (7, 8, 4)
    (tmp_path / "base.toml").write_text('include = "lora.toml"\n')
    with pytest.raises(ConfigError, match="includes it back"):
        load_config(RLConfig, ["-c", str(tmp_path / "lora.toml")])
