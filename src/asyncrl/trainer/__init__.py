"""The trainer process: RL losses, SFT, optimizers, FSDP2, checkpoints."""
