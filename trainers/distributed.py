"""One process's place in a training run: its device, and its rank under torchrun.

``init_distributed`` is called once per process (by ``train_persona``, or by ``train``
when called on its own): it picks the device for this process's local rank and joins
the process group (gloo on CPU, nccl on GPU) when torchrun started several.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from f2f_cam.errors import UserError
from f2f_cam.registry import check_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, samples, logs and the persona."""
        return self.rank == 0


def pick_device(want: str, local_rank: int = 0) -> torch.device:
    """``auto`` takes CUDA, then Apple's MPS, then the CPU; CUDA processes take GPU
    ``local_rank`` (modulo the GPUs visible)."""
    check_device(want)
    if want.startswith("cuda:"):
        if not torch.cuda.is_available() or int(want[5:]) >= torch.cuda.device_count():
            raise UserError(f"--device {want}: no such CUDA GPU is visible to torch")
        return torch.device(want)
    if want in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if want == "cuda":
        raise UserError("--device cuda: no CUDA GPU is visible to torch (see README: install the CUDA build)")
    mps = getattr(torch.backends, "mps", None)
    if want in ("auto", "mps") and mps is not None and mps.is_available():
        return torch.device("mps")
    if want == "mps":
        raise UserError("--device mps: Apple Metal is not available here")
    return torch.device("cpu")


def init_distributed(want_device: str) -> Dist:
    """This process's device, and its rank when started by torchrun (WORLD_SIZE > 1)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(want_device, local_rank)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist(device=device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device)


def finish_distributed() -> None:
    """Leave the process group: every rank, after its last collective. Exiting with it
    still open tears gloo's threads down mid-flight (an abort in about 1 run in 8)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(dd: Dist) -> None:
    """Wait for every rank (no-op in a single process)."""
    if dd.world > 1:
        dist.barrier()


def broadcast_ints(values: list[int], dd: Dist) -> list[int]:
    """Rank 0's ``values`` on every rank: decisions all ranks must agree on."""
    if dd.world <= 1:
        return list(values)
    flag = torch.tensor(values, dtype=torch.int64)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.broadcast(flag, 0)
    return [int(v) for v in flag.tolist()]


def gather_objects(obj, dd: Dist) -> list:
    """Every rank's copy of a small picklable object, in rank order."""
    if dd.world <= 1:
        return [obj]
    out = [None] * dd.world
    dist.all_gather_object(out, obj)
    return out


def gather_tensors(t: torch.Tensor, dd: Dist) -> list[torch.Tensor]:
    """Every rank's copy of a small CPU tensor (RNG states), in rank order."""
    return [o.cpu() for o in gather_objects(t.cpu(), dd)]


def params_hash(model: nn.Module) -> str:
    """SHA-1 of the model's parameter bytes: equal on every rank iff DDP kept them in sync."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def wrap(model: nn.Module, dd: Dist) -> nn.Module:
    """DistributedDataParallel under torchrun (it broadcasts rank 0's weights), else as is."""
    if dd.world <= 1:
        return model
    kw = {"device_ids": [dd.device.index]} if dd.device.type == "cuda" else {}
    # channels_last activations give channels_last gradients for the 4-D weights, which
    # DDP's contiguous buckets copy once per step; its warning says so at every start.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return nn.parallel.DistributedDataParallel(model, **kw)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside a DDP wrapper (the one to save, export and evaluate)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
