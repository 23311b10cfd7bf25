"""The default RL job's starting point: the tiny model after a short SFT on reverse-text.

RL only learns from rewards the model can already sometimes earn, so the untrained tiny model first
learns the chat format and the reversal of short texts (3 to 8 characters) from examples; reversing the
longer texts of the RL tasks (up to 20) is left for RL to learn. The same run by hand:

    asyncrl sft --model.path tiny --sft.data reverse_text.jsonl --sft.max-steps 100 --sft.batch-size 16
        --trainer.optim.type muon --trainer.optim.lr 1e-2 --trainer.optim.warmup-steps 20
        --trainer.row-tokens 128 --trainer.num-threads 1 --sft.eval-fraction 0 --seed 1

with `reverse_text.jsonl` from `sft_records(reverse_text_tasks(1600, seed=1, min_chars=3, max_chars=8))`
(`asyncrl.envs.reverse_text`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from asyncrl.config import ModelConfig
from asyncrl.envs.reverse_text_tasks import reverse_text_tasks, sft_records
from asyncrl.trainer.config import CheckpointConfig, OptimConfig, SFTConfig, SFTProcessConfig, TrainerConfig
from asyncrl.trainer.sft import run_sft
from asyncrl.transport.layout import STABLE, weights_dir

WARM_UP_STEPS = 100
BATCH_SIZE = 16
SEED = 1


def warm_up_on_reverse_text(base_model: Path, out_dir: Path, steps: int = WARM_UP_STEPS) -> None:
    """SFT `base_model` for `steps` steps on reverse-text examples of 3 to 8 characters (one pass) and
    write the result to `out_dir` as an HF model dir."""
    with tempfile.TemporaryDirectory(prefix="asyncrl-warm-start-") as tmp:
        data = Path(tmp) / "reverse_text.jsonl"
        tasks = reverse_text_tasks(steps * BATCH_SIZE, seed=SEED, min_chars=3, max_chars=8)
        data.write_text("".join(json.dumps(r) + "\n" for r in sft_records(tasks)))
        config = SFTProcessConfig(
            output_dir=Path(tmp) / "run",
            seed=SEED,
            model=ModelConfig(path=str(base_model)),
            trainer=TrainerConfig(
                optim=OptimConfig(type="muon", lr=1e-2, warmup_steps=20),
                checkpoint=CheckpointConfig(interval=0),
                row_tokens=128,
                num_threads=1,  # a tiny model gains little from more, and loses much when cores are busy
            ),
            sft=SFTConfig(data=data, eval_fraction=0, max_steps=steps, batch_size=BATCH_SIZE),
        )
        run_sft(config)
        for file in weights_dir(config.output_dir, steps).iterdir():
            if file.name != STABLE:
                shutil.copy2(file, out_dir / file.name)
