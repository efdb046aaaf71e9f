"""Distributed data parallel plumbing: process-group setup and a gather that keeps gradients.

Single process is the default. Under ``torchrun --nproc_per_node=N -m trainer.train ...`` the
environment variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set and we join a process
group (NCCL on CUDA, gloo on CPU). Every rank computes its contrastive loss with its own
queries against the negatives of *all* ranks (:func:`gather_with_grad`), so the multi-rank loss
equals the single-process loss on the same global batch (the public reference code computed it
per GPU, with a batch of 14 negatives instead of 28).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_master(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``."""
    if requested == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup(requested_device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun; otherwise a single-process DistInfo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(device=resolve_device(requested_device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = resolve_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cpu_has_amx_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (the ``amx_bf16`` flag of
    ``/proc/cpuinfo``: Intel AMX), where bf16 autocast ran the tiny training step 1.66x faster
    than fp32 (``bench/gpu.py``). False where the flags cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    return any(line.startswith("flags") and "amx_bf16" in line.split()
               for line in cpuinfo.splitlines())


def available_memory_gib(meminfo: str | None = None) -> float | None:
    """Memory this machine can give a new process now (``MemAvailable`` of ``/proc/meminfo``),
    GiB; None where it cannot be read (not Linux)."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text(encoding="utf-8")
        except OSError:
            return None
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20                     # kB -> GiB
    return None


def cpu_threads(num_workers: int, environ: dict[str, str] | None = None,
                cpu_count: int | None = None) -> int | None:
    """Torch threads for a training process on the CPU, or None to leave torch's choice: the
    cores of this process's share of the machine (``LOCAL_WORLD_SIZE`` processes under
    torchrun) less one per DataLoader worker, at least 1. None when ``OMP_NUM_THREADS`` is set
    (the user's choice stands). On 2 shared cores, threads that oversubscribe the cores made
    small convolutions 25-100x slower (measured; the reason ``make demo`` runs one thread)."""
    environ = os.environ if environ is None else environ
    if environ.get("OMP_NUM_THREADS"):
        return None
    share = (cpu_count or os.cpu_count() or 1) // max(1, int(environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, share - num_workers)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends every rank its share of the summed gradient.

    Forward: (B, ...) on each rank -> (world_size * B, ...), rank r's block at r*B.
    Backward: each rank holds d(L_rank)/d(gathered); the gradient of the *sum* of all ranks'
    losses w.r.t. this rank's input is the all-reduced (summed) gradient, sliced at this rank.
    Written with all_reduce so it works on every backend (gloo has no reduce_scatter).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        tensor = tensor.contiguous()
        ctx.batch = tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_gathered: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad_gathered.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start:start + ctx.batch]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from all ranks along dim 0, differentiably.

    Identity in a single process. All ranks must pass the same shape (the loader gives every
    rank the same number of full batches).
    """
    if world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) tensor over ranks; identity in a single process."""
    if world_size() == 1:
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / world_size()


def all_gather_object(obj):
    """List of ``obj`` from every rank (rank order); ``[obj]`` in a single process."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
