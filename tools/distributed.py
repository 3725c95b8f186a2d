"""Process-group helpers for single-process and ``torchrun`` (DDP) training.

One process per device. ``torchrun`` (or a cluster launcher that sets the same variables) gives
each process ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed` reads them,
starts the process group (NCCL on CUDA, gloo on CPU) and picks the device of the local rank.
Without those variables everything runs as a single process and every helper here degrades to a
no-op, so the same training code serves both cases::

    info = init_distributed(cfg.device)     # DistInfo(rank, world_size, local_rank, device)
    try:
        Trainer(task, cfg, run_dir, info.device).fit(dataset)
    finally:
        cleanup()

Multi-node: run ``torchrun --nnodes N --nproc-per-node G --rdzv-backend c10d
--rdzv-endpoint HOST:PORT main.py ...`` on every node; nothing else changes, except that the
results folder must be on a file system every node sees (all ranks read the checkpoint to resume).
Commands, and what is shared between processes: docs/DISTRIBUTED.md.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` -> the current CUDA device;
    ``cuda:N``/``cpu`` as given.

    Asking for CUDA on a machine without it is an error that says how to run on the CPU.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = str(name).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device '{name}' was requested but CUDA is not available on this machine; "
                               "use device=cpu (or device=auto)")
        device = torch.device(name)
        # Always with an index (the current device, which init_distributed sets per local rank).
        return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device '{name}': expected auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def init_distributed(device: str | torch.device = "auto", *, init_method: Optional[str] = None,
                     timeout_s: float = 1800.0) -> DistInfo:
    """Start the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``).

    The device is resolved with :func:`resolve_device`; on CUDA each process takes
    ``cuda:LOCAL_RANK``. ``init_method`` defaults to ``env://`` (``MASTER_ADDR``/``MASTER_PORT``,
    which torchrun sets); tests pass ``file://...``. Calling it again returns the same answer.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device)
    if dev.type == "cuda":
        if world_size > 1 and ":" not in str(device):  # auto/cuda: one GPU per local rank
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = dict(backend=backend, rank=rank, world_size=world_size,
                                      timeout=datetime.timedelta(seconds=timeout_s))
        if init_method is not None:
            kwargs["init_method"] = init_method
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    return DistInfo(rank=get_rank(), world_size=get_world_size(), local_rank=local_rank, device=dev)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum`` | ``max`` | ``min``) across ranks; identity in one process."""
    if is_distributed():
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(tensor, op=ops[op])
    return tensor


def all_gather_objects(obj: Any, group: Any = None) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj, group=group)
    return out


def gather_objects(obj: Any, dst: int = 0) -> Optional[list[Any]]:
    """Every rank's ``obj`` (picklable), in rank order, on rank ``dst`` only (``None`` elsewhere).

    Unlike :func:`all_gather_objects`, only ``dst`` receives (and holds) every rank's copy.
    ``[obj]`` in one process.
    """
    if not is_distributed():
        return [obj]
    out: Optional[list[Any]] = [None] * get_world_size() if get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP (or ``torch.compile``) wrapper."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


@contextlib.contextmanager
def process_group(device: str | torch.device = "auto", **kwargs: Any) -> Iterator[DistInfo]:
    """:func:`init_distributed` for the duration of a ``with`` block.

    The group is destroyed on exit only if this call started it, so a caller that set up the
    group itself (a test, an outer script) keeps it.
    """
    started = _env_int("WORLD_SIZE", 1) > 1 and not (dist.is_available() and dist.is_initialized())
    info = init_distributed(device, **kwargs)
    try:
        yield info
    finally:
        if started:
            cleanup()


def cleanup() -> None:
    """Destroy the process group if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
