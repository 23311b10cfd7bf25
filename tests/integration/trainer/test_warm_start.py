"""The default job's starting model: the tiny model after the project's SFT warm-up on reverse-text."""

from __future__ import annotations

import pytest
import torch

from asyncrl.builtin_models import resolve_model_name, warm_model_dir
from asyncrl.envs.parsers import Parser
from asyncrl.envs.reverse_text import lcs_ratio
from asyncrl.envs.reverse_text_tasks import reverse_text_tasks
from asyncrl.models import load_model, load_tokenizer


def _greedy_reward(name: str) -> float:
    model_path = resolve_model_name(name)
    model, tokenizer = load_model(model_path), load_tokenizer(model_path)
    rewards = []
    for task in reverse_text_tasks(16, seed=123, min_chars=3, max_chars=8):
        prompt = tokenizer.apply_chat_template(
            task["prompt"], add_generation_prompt=True, return_tensors="pt"
        )
        ids = prompt["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=16, do_sample=False, eos_token_id=tokenizer.eos_token_id)
        completion = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        rewards.append(lcs_ratio([{"role": "assistant", "content": completion}], task["answer"], Parser()))
    return sum(rewards) / len(rewards)


@pytest.mark.slow
def test_the_warm_model_is_built_once_and_reverses_short_texts():
    first = warm_model_dir()
    assert warm_model_dir() == first
    assert (first / "config.json").is_file() and list(first.glob("*.safetensors"))
    warm, untrained = _greedy_reward("tiny-reverse-text"), _greedy_reward("tiny")
    assert warm > 0.7 and untrained < 0.3, (warm, untrained)
