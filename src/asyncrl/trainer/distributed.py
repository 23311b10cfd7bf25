"""Where and in what precision the trainer runs, decided once; parallelism applied from outside the model.

`init_distributed` picks the device (CUDA whenever it is there, unless `trainer.device` says otherwise)
and joins the process group torchrun describes (NCCL on GPUs, gloo on CPUs). The model definition knows
nothing about distribution: FSDP2 and activation checkpointing wrap an ordinary HF model, so the loss and
the loop run unchanged on one rank or many. A compute dtype other than float32 is FSDP2's mixed-precision
policy, on one rank too: bf16 compute over float32 master weights, float32 gradient reduction, float32
optimizer states.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import PreTrainedModel

from asyncrl.config import Device
from asyncrl.devices import DeviceError, resolve_device
from asyncrl.models import DTYPES


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    device: torch.device
    dtype: torch.dtype = torch.float32
    """The compute dtype (`model.dtype`); weights, gradient reduction and optimizer states stay float32."""

    @property
    def sharded(self) -> bool:
        """The model is FSDP2-wrapped: several ranks, or a mixed-precision policy on one."""
        return self.distributed or self.dtype != torch.float32

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def compute_dtype(name: str) -> torch.dtype:
    """The trainer's compute dtype for `model.dtype`; float16 would need loss scaling, so it is refused."""
    if name == "float16":
        raise DeviceError("the trainer computes in float32 or bfloat16, not float16; set model.dtype")
    return DTYPES[name]


def init_distributed(device: Device = "auto", dtype: str = "float32") -> Ranks:
    """Pick this rank's device and join the process group torchrun describes in the environment; a
    single rank without torchrun joins a process group of its own when mixed precision needs FSDP2."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank, setting="trainer.device")
    ranks = Ranks(0, world_size, target, compute_dtype(dtype))
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if ranks.sharded and not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        if world_size > 1:
            dist.init_process_group(backend=backend, device_id=target if target.type == "cuda" else None)
        else:
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
    return replace(ranks, rank=dist.get_rank()) if ranks.distributed else ranks


def apply_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute each decoder layer in the backward pass instead of keeping its activations."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def apply_fsdp(model: PreTrainedModel, ranks: Ranks) -> None:
    """Shard every decoder layer, then the root (embeddings, final norm, head), across all ranks; compute
    in `ranks.dtype` over the float32 parameters, reducing gradients in float32."""
    mesh = init_device_mesh(ranks.device.type, (ranks.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=ranks.dtype, reduce_dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)


def full_state_dict(
    model: torch.nn.Module, ranks: Ranks, trainable_only: bool = False
) -> dict[str, torch.Tensor]:
    """The unsharded weights on CPU (complete on rank 0), or only those that train (a LoRA adapter's). A
    collective: every rank must call it."""
    if not ranks.sharded:
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        state = model.state_dict()
        return {k: v.detach().cpu() for k, v in state.items() if not trainable_only or k in trainable}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only)
    return get_model_state_dict(model, options=options)


def all_reduce_sum(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    if ranks.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()
