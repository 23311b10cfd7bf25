"""TRL's GRPOTrainer on asyncrl's default job, as a TRL user would set it up: run by benchmarks/vs_trl.py
in .venv-trl (`make trl`), one seed per run, one JSON line per training step into --out.

The same model directory, tasks (asyncrl's reverse-text generator), reward (its LCS ratio), batch (32
tasks x 4 completions), completion length, temperature, learning rate and schedule as the default job;
everything else is TRL's default.

    .venv-trl/bin/python benchmarks/trl_grpo.py --model DIR --seed 0 --steps 320 --out trl.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from asyncrl.envs.parsers import Parser
from asyncrl.envs.reverse_text import lcs_ratio
from asyncrl.envs.reverse_text_tasks import reverse_text_tasks


def lcs_reward(completions: list[list[dict]], answer: list[str], **_: object) -> list[float]:
    """asyncrl's reverse-text reward, one per completion."""
    parser = Parser()
    return [
        lcs_ratio(completion, target, parser) for completion, target in zip(completions, answer, strict=True)
    ]


class StepLog(TrainerCallback):
    """One line per optimizer step: TRL's logged figures with the wall time since the first step began."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "w")  # noqa: SIM115 - open for the whole training
        self.started: float | None = None
        self.launched = time.time()

    def on_step_begin(self, args, state, control, **kwargs):
        if self.started is None:
            self.started = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs:
            now = time.time()
            line = {"step": state.global_step, "time": now, "train_s": now - self.started,
                    "startup_s": self.started - self.launched, **logs}  # fmt: skip
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    log = StepLog(args.out)
    torch.set_num_threads(args.threads)
    tasks = reverse_text_tasks(1000, 0, min_chars=5, max_chars=20)  # the default job's env.args
    dataset = Dataset.from_list(tasks)
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, use_cpu=True, seed=args.seed, max_steps=args.steps,
            per_device_train_batch_size=128, num_generations=4, max_completion_length=32,
            temperature=1.0, beta=0.0, learning_rate=5e-4, lr_scheduler_type="constant_with_warmup",
            warmup_steps=10, max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to="none",
        )  # fmt: skip
        trainer = GRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32),
            processing_class=AutoTokenizer.from_pretrained(args.model),
            reward_funcs=lcs_reward,
            args=config,
            train_dataset=dataset,
            callbacks=[log],
        )
        trainer.train()


if __name__ == "__main__":
    main()
