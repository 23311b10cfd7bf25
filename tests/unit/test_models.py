import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from asyncrl.models import (
    ModelLoadError,
    build_tiny_model,
    load_model,
    load_tokenizer,
    resolve_model_path,
    tiny_model_dir,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tokenizer(built: Path):
    return load_tokenizer(str(built))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASYNCRL_CACHE_DIR", str(tmp_path))
    return tmp_path


TEXTS = [
    "",
    "hello world",
    "  leading spaces",
    "\n\nnewlines\n",
    "tabs\tand\r\ncrlf",
    "héllo 世界 🎉",
    " it's  ok ",
]


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_round_trips_unicode_and_whitespace(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenizer_encodes_one_id_per_utf8_byte_without_bos(tokenizer):
    assert tokenizer.encode("aé") == [ord("a"), *"é".encode()]


def test_tokenizer_normalizes_to_nfc_like_qwen2(tokenizer):
    assert tokenizer.decode(tokenizer.encode("e\u0301")) == "\u00e9"


def test_auto_tokenizer_and_raw_tokenizer_json_give_the_same_ids(built, tokenizer):
    # vLLM and transformers 4 read tokenizer.json as-is; transformers 5 rebuilds it as Qwen2Tokenizer.
    raw = Tokenizer.from_file(str(built / "tokenizer.json"))
    text = "<|im_start|>user\n  Héllo, it's 2024!\n\n\t世界<|im_end|>\n"
    assert raw.encode(text).ids == tokenizer.encode(text)


def test_special_tokens_are_single_ids(tokenizer):
    assert tokenizer.encode("<|endoftext|><|im_start|><|im_end|>") == [256, 257, 258]
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token) == (256, 258, None)


def test_chat_template_renders_qwen_turns_and_generation_prompt(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_template_renders_tools_tool_calls_and_tool_results(tokenizer):
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}
    messages = [
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "5"},
    ]
    text = tokenizer.apply_chat_template(messages, tools=[tool], tokenize=False)
    assert text.startswith("<|im_start|>system\n# Tools\n")
    assert json.dumps(tool) in text
    call_json = '{"name": "add", "arguments": {"a": 2, "b": 3}}'
    assert f"<|im_start|>assistant\n<tool_call>\n{call_json}\n</tool_call><|im_end|>\n" in text
    assert text.endswith("<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>\n")


def test_built_dir_loads_with_plain_auto_classes(built):
    model = AutoModelForCausalLM.from_pretrained(built)
    tokenizer = AutoTokenizer.from_pretrained(built)
    ids = torch.tensor([tokenizer.encode("hello")])
    assert model(ids).logits.shape == (1, 5, 272)
    assert model.generation_config.eos_token_id == [258, 256]
    assert model.config.model_type == "qwen2"


def test_tiny_model_has_between_half_and_1_2_million_parameters(built):
    params = sum(p.numel() for p in load_model(str(built)).parameters())
    assert 500_000 <= params <= 1_200_000


def test_load_model_returns_an_eval_sdpa_model_in_the_requested_dtype(built):
    model = load_model(str(built), dtype=torch.bfloat16)
    assert not model.training
    assert model.dtype == torch.bfloat16
    assert model.config._attn_implementation == "sdpa"


def test_same_seed_builds_bit_identical_weights(built, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert (again / "model.safetensors").read_bytes() == (built / "model.safetensors").read_bytes()


def test_different_seeds_build_different_weights(built, tmp_path):
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (built / "model.safetensors").read_bytes()


def test_tiny_model_dir_is_built_once_under_the_cache_dir_and_reused(isolated_cache):
    first = tiny_model_dir()
    assert first == isolated_cache / "models" / "tiny-v1"
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_dir() == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp


def test_tiny_resolves_to_the_cached_dir(isolated_cache, built):
    cached = isolated_cache / "models" / "tiny-v1"
    shutil.copytree(built, cached)
    assert resolve_model_path("tiny") == cached


BUILDER = """
import sys, time
from pathlib import Path
from asyncrl.models import tiny_model_dir
Path(sys.argv[1]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
print(tiny_model_dir())
"""


def test_concurrent_builds_both_succeed_and_leave_one_valid_dir(isolated_cache, tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(tmp_path / f"ready{i}"), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    # Release both builders together, after their slow imports, so the builds really overlap.
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    target = isolated_cache / "models" / "tiny-v1"
    assert {out.strip() for out, _ in outputs} == {str(target)}
    assert [p.name for p in target.parent.iterdir()] == ["tiny-v1"]
    assert load_model(str(target)).config.vocab_size == 272


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope"


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "weights.bin").write_bytes(b"x")
    return tmp_path / "weights.bin"


def _no_config(tmp_path: Path) -> Path:
    (tmp_path / "m").mkdir()
    return tmp_path / "m"


def _no_weights(tmp_path: Path) -> Path:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    return tmp_path / "m"


def _no_tokenizer(tmp_path: Path) -> Path:
    path = _no_weights(tmp_path)
    (path / "model.safetensors").write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_missing, "does not exist"),
        (_a_file, "not a directory"),
        (_no_config, "no config.json"),
        (_no_weights, "no weights"),
        (_no_tokenizer, "no tokenizer files"),
    ],
)
def test_resolve_model_path_rejects_unusable_dirs_naming_the_path(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(ModelLoadError, match=reason) as info:
        resolve_model_path(str(path))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_load_model_on_garbage_config_raises_model_load_error_naming_the_path(built, tmp_path):
    broken = shutil.copytree(built, tmp_path / "broken")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="could not load a causal LM") as info:
        load_model(str(broken))
    assert str(broken) in str(info.value)


def test_load_model_rejects_weights_missing_from_the_checkpoint(built, tmp_path):
    deeper = shutil.copytree(built, tmp_path / "deeper")
    config = json.loads((deeper / "config.json").read_text())
    config["num_hidden_layers"] += 1
    config["layer_types"].append("full_attention")
    (deeper / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"lack \d+ tensors \(model\.layers\.4\."):
        load_model(str(deeper))


def test_load_model_on_truncated_weights_says_the_file_is_corrupt(built, tmp_path):
    truncated = shutil.copytree(built, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="truncated or corrupt") as info:
        load_model(str(truncated))
    assert str(truncated) in str(info.value)
