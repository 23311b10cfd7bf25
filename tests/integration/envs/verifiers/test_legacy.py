"""Environments of verifiers' 2025 API (verifiers 0.3, `vf.load_environment`) as asyncrl environments: the
real library, under the interpreter `make verifiers-legacy` installs, in env-server workers. A SingleTurnEnv
and a ToolEnv, written as packages here, are evaluated and trained; the ToolEnv's multi-turn rollout is
scripted (a tiny random model never calls a tool) and must be token-exact across turns."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncrl.envs.client import ModelClient
from asyncrl.envs.reverse_text_tasks import lcs_score, reverse_text_tasks
from asyncrl.envs.verifiers.config import VerifiersConfig
from asyncrl.envs.verifiers.legacy import LegacyEnvironment, LegacyEnvLoadError, legacy_python
from asyncrl.models import load_tokenizer
from tests.scripted_server import Script, scripted_server
from tests.verifiers_runs import asyncrl_cli, rl_two_steps

try:
    PYTHON = legacy_python(VerifiersConfig())
except LegacyEnvLoadError:
    pytest.skip("verifiers 0.3 is not installed: `make verifiers-legacy`", allow_module_level=True)

REVERSE = """
import difflib
import os

import verifiers as vf
from datasets import Dataset

WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "sugar"]


class Reverse(vf.SingleTurnEnv):
    def __init__(self, fail_on: str, crash_on: str, **kwargs):
        super().__init__(**kwargs)
        self.fail_on, self.crash_on = fail_on, crash_on

    async def setup_state(self, state):
        if state["answer"] == self.fail_on[::-1]:
            raise vf.Error("this environment fails here")
        if state["answer"] == self.crash_on[::-1]:
            os._exit(3)
        return await super().setup_state(state)


def load_environment(fail_on: str = "", crash_on: str = "") -> vf.Environment:
    dataset = Dataset.from_list([{"question": f"Reverse the text: {w}", "answer": w[::-1]} for w in WORDS])

    def similarity(completion, answer, **kwargs) -> float:
        return difflib.SequenceMatcher(None, completion[-1]["content"], answer).ratio()

    return Reverse(fail_on, crash_on, dataset=dataset, rubric=vf.Rubric(funcs=[similarity]))
"""

ADD = """
import verifiers as vf
from datasets import Dataset


def add(a: int, b: int) -> int:
    \"\"\"Add two integers.\"\"\"
    return a + b


def load_environment() -> vf.Environment:
    dataset = Dataset.from_list([{"question": "What is 2 + 3? Use the tool.", "answer": "5"}] * 4)

    def correct(completion, answer, **kwargs) -> float:
        return float(completion[-1]["content"].strip() == answer)

    def brief(completion, **kwargs) -> float:
        return 1.0 - min(len(completion[-1]["content"]) / 32, 1.0)

    rubric = vf.Rubric(funcs=[correct, brief], weights=[1.0, 0.1])
    # The environment's own sampling args: they must reach the server beside asyncrl's.
    sampling = {"stop": ["###"], "extra_body": {"chat_template_kwargs": {"greeting": "hi"}}}
    return vf.ToolEnv(dataset=dataset, tools=[add], rubric=rubric, max_turns=3, sampling_args=sampling)
"""

CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 64}


@pytest.fixture(scope="module")
def legacy_packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`asyncrl-test-legacy-reverse` (a SingleTurnEnv) and `asyncrl-test-legacy-add` (a ToolEnv),
    importable by the workers this test's processes start."""
    root = tmp_path_factory.mktemp("legacy_packages")
    for name, source in {"asyncrl_test_legacy_reverse": REVERSE, "asyncrl_test_legacy_add": ADD}.items():
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(source)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), before]))
    yield root
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before


def test_a_tool_env_rollout_is_one_sequence_of_the_servers_tokens_trained_on_the_models_turns(
    tool_tokenizer, tmp_path, legacy_packages
):
    tokenizer = load_tokenizer(str(tool_tokenizer))
    env = LegacyEnvironment("asyncrl-test-legacy-add", {}, VerifiersConfig(retries=0), tmp_path, "train")
    script = Script([CALL, "5"])

    async def main(url):
        async with env, ModelClient(url, "scripted") as client:
            return await env.run(client, env.dataset[0], SAMPLING)

    with scripted_server(script, str(tool_tokenizer)) as url:
        rollout = asyncio.run(main(url))
    assert rollout.error is None, rollout.error
    assert rollout.reward == pytest.approx(1.0 + 0.1 * (1 - 1 / 32))
    assert rollout.metrics["total_tool_calls"] == 1.0
    assert [m["role"] for m in rollout.completion] == ["assistant", "tool", "assistant"]
    assert rollout.completion[1]["content"] == "5"

    (kind_1, first), (kind_2, second) = [r for r in script.requests if r[0] != "tokenize"]
    assert (kind_1, kind_2) == ("chat", "chat_tokens")  # the second turn is token-in
    for body in (first, second):
        assert body["stop"] == ["###"] and body["chat_template_kwargs"] == {"greeting": "hi"}
        assert body["temperature"] == 1.0 and body["max_completion_tokens"] == 64
    first_prompt = tokenizer.apply_chat_template(
        first["messages"], tools=first["tools"], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    generated = [
        tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id] for text in (CALL, "5")
    ]
    # The second prompt is the first prompt and reply verbatim, then the tool message's tokens.
    assert second["tokens"][: len(first_prompt) + len(generated[0])] == list(first_prompt) + generated[0]
    [(ids, mask, logprobs, _)] = rollout.token_samples()
    assert ids == second["tokens"] + generated[1]
    assert [t for t, m in zip(ids, mask, strict=True) if m] == generated[0] + generated[1]
    assert [lp for lp, m in zip(logprobs, mask, strict=True) if m] == [-0.5] * len(
        generated[0] + generated[1]
    )
    tool_span = slice(len(first_prompt) + len(generated[0]), len(second["tokens"]))
    assert "5" in tokenizer.decode(ids[tool_span]) and not any(mask[tool_span])


def test_a_failing_or_crashing_environment_costs_its_group_only(tmp_path, legacy_packages):
    args = {"fail_on": "apple", "crash_on": "river"}
    config = VerifiersConfig(retries=1)
    env = LegacyEnvironment("asyncrl-test-legacy-reverse", args, config, tmp_path, "train")

    async def main(url):
        async with env, ModelClient(url, "scripted") as client:
            return [await env.run_group(client, env.dataset[i], SAMPLING, 2) for i in (0, 1, 2)]

    script = Script(["enots", "stone"])
    with scripted_server(script) as url:
        failed, crashed, ok = asyncio.run(main(url))
    assert all(r.error is not None and not r.turns for r in failed + crashed)
    assert "this environment fails here" in failed[0].error
    assert "exited with code 3" in crashed[0].error
    # The worker was started again, and the next group runs: "stone" against "enots", then itself.
    assert [r.error for r in ok] == [None, None] and sorted(r.reward for r in ok) == [0.2, 1.0]
    assert [len(r.turns) for r in ok] == [1, 1]


def test_the_reverse_text_example_has_the_built_in_tasks_and_score(tmp_path):
    args = {"num_examples": 8, "min_chars": 5, "max_chars": 20}
    held_out = reverse_text_tasks(8, 0, 5, 20, "test")
    env = LegacyEnvironment("asyncrl-legacy-reverse-text", args, VerifiersConfig(), tmp_path, "eval")
    assert [(t["prompt"], t["answer"]) for t in env.dataset] == [(t["prompt"], t["answer"]) for t in held_out]

    async def main(url):
        async with env, ModelClient(url, "scripted") as client:
            return await env.run_group(client, env.dataset[0], SAMPLING, 2)

    answer = held_out[0]["answer"]
    with scripted_server(Script([answer, answer[:-3]])) as url:
        rollouts = asyncio.run(main(url))
    # The reply is stripped, as the built-in env's parser does.
    expected = [1.0, lcs_score(answer[:-3].strip(), answer)]
    assert sorted(r.reward for r in rollouts) == pytest.approx(sorted(expected))


def test_an_unknown_environment_says_to_install_its_package(tmp_path):
    with pytest.raises(LegacyEnvLoadError, match="its package is installed"):
        LegacyEnvironment("asyncrl-no-such-env", {}, VerifiersConfig(), tmp_path, "train")


def test_no_legacy_interpreter_says_how_to_install_one(monkeypatch, tmp_path):
    monkeypatch.setattr("asyncrl.envs.verifiers.legacy.CHECKOUT_VENV", tmp_path / "none")
    monkeypatch.delenv("ASYNCRL_VERIFIERS_LEGACY_PYTHON", raising=False)
    with pytest.raises(LegacyEnvLoadError, match="make verifiers-legacy"):
        legacy_python(VerifiersConfig())


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, metrics",
    [("asyncrl-test-legacy-reverse", {"similarity"}), ("asyncrl-test-legacy-add", {"correct", "brief"})],
)
def test_eval_runs_a_legacy_env_with_its_rubric_and_pass_at_k(env, metrics, tmp_path, legacy_packages):
    result = asyncrl_cli("eval", env, "--source", "verifiers-legacy", "--model.path", "tiny",
                      "--num-examples", "3", "--rollouts-per-example", "2", "--sampling.max-tokens", "12",
                      "--output-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rollouts"] == 6 and summary["errors"] == 0 and set(summary["pass_at_k"]) == {"1", "2"}
    assert metrics <= set(summary["metrics"])  # and verifiers' own: num_turns, tool call counts
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(r["tokens"] > 0 and r["completion"][0]["role"] == "assistant" for r in records)


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, question",
    [("asyncrl-test-legacy-reverse", "Reverse the text: "), ("asyncrl-test-legacy-add", "2 + 3")],
)
def test_rl_trains_on_a_legacy_env_on_the_servers_tokens(env, question, tmp_path, legacy_packages):
    prompts = rl_two_steps(
        tmp_path / "run",
        "--orchestrator.env.source", "verifiers-legacy", "--orchestrator.env.name", env,
        "--orchestrator.batch-size", "8", "--orchestrator.group-size", "4",
    )  # fmt: skip
    # The prompt is the server's rendering of the task (the ToolEnv's with the tool's schema).
    assert all(question in p and ('"add"' in p) == (env == "asyncrl-test-legacy-add") for p in prompts)
