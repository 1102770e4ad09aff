"""Training in several processes with torch.distributed (DDP), launched by torchrun.

`torchrun --nproc-per-node N -m at2seld_edge.cli train ...` runs the same command line in N
processes (on one or several nodes); one process is the plain single-process run. The processes
share the work so that the run is the single-process run with the same global batch:

- each epoch's global batches are the same whatever the process count; every process takes a
  contiguous share of each (`GlobalBatchSampler`);
- loss terms are normalized by their global counts, so DDP's gradient average is the gradient of
  the global batch's loss;
- BatchNorm statistics are those of the global batch (torch's SyncBatchNorm on GPUs, the same
  arithmetic over gloo on CPUs, where torch's refuses to run);
- validation clips are predicted in shares and gathered on rank 0, which calibrates thresholds,
  scores, decides, and alone writes checkpoints, metrics and plots.

Random masks (dropout, SpecAugment) are drawn per process: with them a run is the single-process
run in distribution, not bit for bit. nccl on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from at2seld_edge.devices_torch import resolve_device


def launched_processes() -> int:
    """How many processes torchrun started for this run (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that talks to the user."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class Dist:
    """This process's place in the run, and the collectives the trainer needs (no-ops alone)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    bn_group: Any = None  # the gloo group CPU BatchNorm synchronizes over

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
        if not self.active:
            return [obj]
        out = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of `t` (a new tensor)."""
        t = t.detach().clone()
        if self.active:
            dist.all_reduce(t)
        return t

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) everywhere, so every rank predicts alike."""
        if self.active:
            for b in module.buffers():
                dist.broadcast(b, src=0)


@contextmanager
def distributed(device_flag: str) -> Iterator[Dist]:
    """This process's `Dist`: under torchrun (WORLD_SIZE > 1) the process group is set up here
    (nccl for CUDA, gloo for the CPU) and torn down on exit; a group the caller set up is used
    as it is."""
    if launched_processes() == 1 and not dist.is_initialized():
        yield Dist(device=resolve_device(device_flag))
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_flag, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    owns = not dist.is_initialized()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    bn_group = dist.new_group(backend="gloo") if device.type == "cpu" else None
    try:
        yield Dist(dist.get_rank(), dist.get_world_size(), device, bn_group)
    finally:
        if owns:
            dist.destroy_process_group()
        elif bn_group is not None:
            dist.destroy_process_group(bn_group)


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """An epoch's global batches, the same for any process count: a permutation of the segments
    seeded from (seed, epoch), cut into batches of `batch_size`, of which each process takes a
    contiguous share (shares differ by at most one segment). A final batch smaller than the
    process count is left out (every process needs a segment); one process leaves nothing out.
    Each share holds (segment, epoch) keys: the dataset seeds a segment's augmentation from them,
    in whichever loader worker reads it."""

    def __init__(self, segments: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.segments, self.batch_size, self.seed, self.rank, self.world = segments, batch_size, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def left_out(self) -> int:
        """Segments of each epoch no process trains on."""
        rest = self.segments % self.batch_size
        return rest if rest < self.world else 0

    def __len__(self) -> int:
        return -(-(self.segments - self.left_out) // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.segments, generator=gen).tolist()
        for start in range(0, self.segments - self.left_out, self.batch_size):
            batch = order[start:start + self.batch_size]
            per, extra = divmod(len(batch), self.world)
            lo = self.rank * per + min(self.rank, extra)
            hi = lo + per + (1 if self.rank < extra else 0)
            yield [(i, self.epoch) for i in batch[lo:hi]]


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


# ----------------------------------------------------------------------------- BatchNorm over processes


class _AllReduceSum(torch.autograd.Function):
    """The sum over a group's processes, differentiable: the gradient of a sum that every
    process took is the sum of their gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        t = t.clone()
        dist.all_reduce(t, group=group)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, for CPU processes
    (torch's SyncBatchNorm runs on GPUs only). Two all-reduces per layer (sums, then squared
    deviations from the global mean), differentiable, over a gloo group of their own. The same
    parameters and buffers as the BatchNorm it replaces, so checkpoints do not change."""

    def __init__(self, num_features: int, eps: float, momentum: float | None, affine: bool,
                 track_running_stats: bool, group: Any = None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.group = group

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size(self.group) > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        x32 = x.float()
        head = _AllReduceSum.apply(torch.cat([x32.sum(dims), x32.new_tensor([x32.numel() // x32.shape[1]])]),
                                   self.group)
        n, mean = head[-1], head[:-1] / head[-1]
        centred = x32 - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), self.group) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(var.detach() * (n / (n - 1).clamp(min=1)), alpha=f)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @classmethod
    def convert(cls, module: nn.Module, group: Any) -> nn.Module:
        """`module` with every BatchNorm replaced (its parameters and buffers kept)."""
        out = module
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                      group)
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.train(module.training)
        for name, child in module.named_children():
            out.add_module(name, cls.convert(child, group))
        return out


def sync_batchnorm(model: nn.Module, ctx: Dist) -> nn.Module:
    """BatchNorm over the global batch: torch's SyncBatchNorm on GPUs, GlooSyncBatchNorm on CPUs."""
    if ctx.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return GlooSyncBatchNorm.convert(model, ctx.bn_group)
