"""One process or many: what a training recipe and a sharded ``hoe evaluate`` need from ``torch.distributed``,
and nothing when they run alone.

``torchrun --nproc_per_node N`` and ``accelerate launch --num_processes N`` both start N copies of the same
command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:meth:`Dist.from_env` joins that group (gloo on CPU, NCCL on GPUs, one GPU per local rank). A recipe then

* takes its share of every step's global batch (:meth:`Dist.shard`: contiguous rows, the first ranks one
  more when the batch does not divide evenly);
* sums what is per row over all processes (:meth:`Dist.sum`: rewards, token counts, whitening moments), so
  every statistic is the one of the global batch;
* sums gradients (:meth:`Dist.sum_grads`) of losses already divided by a global count, so each optimizer
  step is the one a single process would take on the whole batch, and every rank keeps identical parameters;
* writes only on rank 0 (:attr:`Dist.is_main`).

Single-process runs get ``Dist()`` (rank 0 of 1), whose operations return their input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from hoe.devices import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this object initialised the process group (and closes it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> Dist:
        """Join the process group the launcher describes (``WORLD_SIZE`` > 1), or run alone."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=resolve_device(device))
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        target = resolve_device(device)
        if target.type == "cuda":
            target = torch.device("cuda", local)
            torch.cuda.set_device(target)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), target, owns)

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of a global batch of ``n`` rows."""
        base, extra = divmod(n, self.world)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (self.rank < extra)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``Σ_ranks t`` (a new tensor; ``t`` itself when alone)."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        out = t.detach().to(self.device, torch.float64 if t.is_floating_point() else t.dtype).clone()
        dist.all_reduce(out)
        return out.to(t.device, t.dtype)

    def sum_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Replace every gradient by its sum over the ranks (missing gradients count as zeros)."""
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if self.world == 1:
            return
        import torch.distributed as dist

        flat = torch.cat(
            [p.grad.reshape(-1).to(self.device) for p in params]
        )  # one message, not one per tensor
        dist.all_reduce(flat)
        start = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[start : start + n].view_as(p.grad))
            start += n

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
