"""torchrun glue: the process group from the environment, rank 0 as the one that writes, the device of a rank."""

from __future__ import annotations

import datetime
import os
import torch
import torch.distributed as dist


def init_distributed(device: torch.device | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group from torchrun's environment once.

    Backend: $POCKETGUARD_DIST_BACKEND, else NCCL for CUDA training (the default when CUDA is available),
    gloo for CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
        backend = os.environ.get("POCKETGUARD_DIST_BACKEND") or ("nccl" if cuda else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local)
        # Rank 0 alone evaluates and saves between steps of a recipe; the others wait longer than the
        # 10-minute default allows.
        minutes = float(os.environ.get("POCKETGUARD_DIST_TIMEOUT_MIN", "120"))
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local
    return 0, 1, 0


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def default_device(requested: str | None = None) -> torch.device:
    """`requested` (e.g. TrainConfig.device) if given, else this rank's GPU when there is one, else the CPU."""
    if requested:
        dev = torch.device(requested)
        if dev.type == "cuda" and dev.index is None:  # "cuda" means this process's GPU under torchrun
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
