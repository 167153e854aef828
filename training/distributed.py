"""Data-parallel training under torchrun: a process per rank, DistributedDataParallel averaging the gradients.

    torchrun --standalone --nproc_per_node=2 -m training train --config configs/fashion-mnist.toml

Without torchrun nothing here acts: one process, no process group, the trainer as it always was. Under it
(`torch.distributed.is_torchelastic_launched`), `session` joins the process group from torchrun's environment
(WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT; init_method env://): gloo on CPUs, nccl with one GPU per rank
(cuda:LOCAL_RANK).

W ranks train as one process does on the same global batch (train.batch_size), up to the order of float sums:
- every rank holds the whole data set and the trainer's two generators, seeded alike and restored alike on
  --resume, so every rank draws the data order and dequantizes the whole global batch as one process would;
- each rank takes its rows of that batch (`rows`: W contiguous parts). Together they are the batch a
  DistributedSampler with the same seed per epoch would give them; the trainer has no DataLoader (batches are
  index slices of tensors in memory), so it is each batch that is split, not the data set;
- the model runs on them through `Shard`, whose posteriors draw the reparameterization noise of the whole batch
  and keep their rows (`RowsGaussian`): image j gets the noise one process gives it, whichever rank holds it, and
  the RNG states stay the same on every rank, so rank 0's checkpoint holds every rank's;
- each rank's loss is the mean over its rows times its share W n_r / n (`Rows.share`: 1 for equal parts), so
  DDP's average of the ranks' gradients is the gradient of the global batch's mean loss;
- a step is skipped on every rank when it is on any (`all_true`); the clipped norm is the same everywhere since
  the gradients are.
Rank 0 alone evaluates, prints and writes, after the epoch's training sums are added over ranks (`sum_over_ranks`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from training.distributions import DiagonalGaussian
from training.latent import LatentModel, Prior
from training.likelihoods import PixelDistribution


def launched() -> bool:
    """Started by torchrun (or another torchelastic launcher), whose environment names the process group."""
    return dist.is_available() and dist.is_torchelastic_launched()


def active() -> bool:
    """A process group exists: this process is one rank of several (or of one, under torchrun)."""
    return dist.is_available() and dist.is_initialized()


@contextmanager
def session() -> Iterator[None]:
    """Under torchrun, the process group for the block, left by every rank together; nothing in one process, nor
    where the caller has made the group."""
    if not launched() or active():
        yield
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(dist.get_node_local_rank())
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
        dist.barrier()  # no rank leaves before rank 0 has written the last checkpoint
    finally:
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0, or the one process: the rank that evaluates, prints and writes."""
    return rank() == 0


def device() -> torch.device:
    """This rank's GPU under nccl, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def threads_per_process(threads: int, here: int | None = None) -> int:
    """train.threads shared by the `here` ranks on this machine (torchrun's LOCAL_WORLD_SIZE), at least 1 each;
    0 (torch's default, which under torchrun is its OMP_NUM_THREADS=1) stays 0."""
    if here is None:
        here = int(os.environ.get("LOCAL_WORLD_SIZE", world_size())) if active() else 1
    return max(1, threads // here) if threads else 0


def check_batch(batch_size: int, num_train: int, world: int | None = None) -> None:
    """Refuse a global batch the ranks cannot split: W must divide it, and the last batch of an epoch must give
    each rank an image."""
    world = world or world_size()
    if batch_size % world:
        raise ValueError(f"train.batch_size = {batch_size} is the global batch, split across {world} processes: "
                         f"it must be divisible by {world} (each process takes batch_size / {world})")
    last = num_train % batch_size
    if 0 < last < world:
        raise ValueError(f"the last batch of an epoch has {last} image(s) ({num_train} training images, batch size "
                         f"{batch_size}), fewer than the {world} processes: change data.limit_train or the batch size")


@dataclass(frozen=True)
class Rows:
    """A rank's rows [start, stop) of a global batch of `total` images shared by `world` ranks."""

    start: int
    stop: int
    total: int
    world: int = 1

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def share(self) -> float:
        """W n_r / n: the weight of this rank's mean loss that makes DDP's average of the ranks' gradients the
        gradient of the global batch's mean (1.0 for equal parts)."""
        return self.size * self.world / self.total


def rows(total: int, rank_: int | None = None, world: int | None = None) -> Rows:
    """This rank's rows of a global batch of `total`: W contiguous parts, the first total % W one row longer (all
    the rows in one process)."""
    r = rank() if rank_ is None else rank_
    w = world or world_size()
    base, extra = divmod(total, w)
    start = r * base + min(r, extra)
    return Rows(start, start + base + (r < extra), total, w)


@dataclass
class RowsGaussian(DiagonalGaussian):
    """q(z|x) of rows [start, start + N) of a global batch of `total` images. Its draw is those rows of a draw for
    the whole batch, made as one process makes it (on the CPU, from the given or the global generator), so an
    image's noise does not depend on the rank that holds it."""

    start: int = 0
    total: int = 0

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        whole = torch.randn((self.total, *self.mu.shape[1:]), generator=generator, dtype=self.mu.dtype)  # (n, D)
        eps = whole[self.start : self.start + len(self.mu)].to(self.mu.device)  # (N, D)
        return self.mu + self.std * eps


class Shard(LatentModel):
    """`model` as one rank trains it, the module DDP wraps: `forward` is the training objective of this rank's rows
    of the global batch, its posteriors `RowsGaussian`. The weights are model's."""

    def __init__(self, model: LatentModel, objective: Callable[..., Any]):
        super().__init__()
        self.model, self.objective = model, objective
        self.latent_dims = model.latent_dims
        self.rows = Rows(0, 0, 0)

    def encode(self, x: torch.Tensor) -> list[DiagonalGaussian]:
        return [RowsGaussian(q.mu, q.logvar, self.rows.start, self.rows.total) for q in self.model.encode(x)]

    def decode(self, z: torch.Tensor) -> PixelDistribution:
        return self.model.decode(z)

    def prior(self, level: int, above: torch.Tensor | None = None) -> Prior:
        return self.model.prior(level, above)

    def forward(self, x: torch.Tensor, *args: Any) -> tuple[Any, float]:
        """(objective(self, this rank's rows of x, *args), their share): x is the global batch (B, C, H, W)."""
        self.rows = rows(len(x))
        return self.objective(self, x[self.rows.start : self.rows.stop].to(device()), *args), self.rows.share


def wrap(model: LatentModel, objective: Callable[..., Any]) -> DistributedDataParallel | None:
    """The objective of model's shard through DistributedDataParallel when there is a process group; None in one
    process."""
    if not active():
        return None
    here = device()
    return DistributedDataParallel(Shard(model, objective), device_ids=[here.index] if here.type == "cuda" else None)


def all_true(flag: torch.Tensor) -> bool:
    """Whether a boolean holds on every rank (one process: whether it holds)."""
    if not active():
        return bool(flag)
    agreed = flag.to(torch.float32)
    dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
    return bool(agreed)


def sum_over_ranks(values: list[float]) -> list[float]:
    """Each value added over the ranks, in float64 (one process: the values)."""
    if not active():
        return values
    summed = torch.tensor(values, dtype=torch.float64, device=device())
    dist.all_reduce(summed)
    return summed.tolist()


def on_cpu(model: LatentModel) -> LatentModel:
    """model itself when on the CPU, else a CPU copy: the evaluation's data and noise are on the CPU."""
    return model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
