"""Data-parallel training under torchrun: which rank this process is, the process group, and
the batch-wide reductions a training objective needs.

torchrun starts one process per rank and sets RANK, LOCAL_RANK and WORLD_SIZE; without them
(or with WORLD_SIZE 1) edgesr trains in one process and every function here is the identity.
The recipe's batch B is the global batch: every rank draws the same B crops from the same seeded
generator and keeps its contiguous share B/W (rank r: samples r B/W .. (r+1) B/W - 1). DDP
averages the gradients of the W local means, which is the gradient of the global mean, so the
run means the same at any world size and resumes at another one. An objective that looks at the
whole batch (a ranking, a sum over samples) uses `batch_gather`/`batch_sum`, so it sees the
global batch too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from edgesr.errors import PeerLost, ToolError, UserError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: rank r of W (local rank on its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and progress."""
        return self.rank == 0

    def shard(self, batch: int) -> slice:
        """This rank's contiguous share of a global batch of `batch` samples."""
        per_rank = batch // self.world
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ToolError(f"{name}={value!r} is not a number: launch with torchrun, which sets it") from None


def launched() -> Ranks:
    """The ranks torchrun (or Slurm through torchrun) set in the environment; one rank without it."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ToolError(f"RANK={rank} of WORLD_SIZE={world} is not a rank: launch with torchrun, which sets them")
    return Ranks(rank, world, local_rank)


def active() -> bool:
    """Whether this process is in a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def current() -> Ranks:
    """The ranks of the running process group (one rank when there is none)."""
    if active():
        return Ranks(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return Ranks()


def device_for(ranks: Ranks) -> torch.device:
    """One GPU per local rank when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", ranks.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


@contextmanager
def process_group() -> Iterator[Ranks]:
    """Join the job's process group for the body (nccl on GPUs, gloo on CPU) and leave it after;
    nothing to join in a single process."""
    ranks = launched()
    if ranks.world == 1 or active():
        yield current()
        return
    if not dist.is_available():
        raise ToolError("this torch build has no torch.distributed: train in one process (without torchrun)")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device_for(ranks))
    try:
        dist.init_process_group(backend)
    except (RuntimeError, ValueError) as exc:
        raise ToolError(f"could not join the torchrun job as rank {ranks.rank} of {ranks.world} ({backend}): "
                        f"{_first_line(exc)}") from None
    try:
        yield current()
        dist.barrier()  # leave together: a rank whose peer has already left can abort in gloo's threads
    finally:
        dist.destroy_process_group()


def check_batch(batch: int, ranks: Ranks) -> None:
    """The global batch must split evenly over the ranks (equal shards keep the mean exact)."""
    if batch % ranks.world:
        raise UserError(f"batch {batch} does not split over {ranks.world} ranks: «batch» is the global batch, pass a "
                        f"multiple of {ranks.world}, e.g. {max(ranks.world, batch - batch % ranks.world)}")


def _first_line(exc: BaseException) -> str:
    """The reason in a collective's error: its first sentence, without gloo's source location."""
    text = " ".join(str(exc).split())
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". ", 1)[0][:200]


def peer_lost(exc: BaseException, ranks: Ranks) -> PeerLost:
    """The error a collective raised when another rank died, as one line."""
    return PeerLost(f"rank {ranks.rank} of {ranks.world}: another rank stopped ({_first_line(exc)}); the job ends, "
                    "the last checkpoint is kept: continue it with «resume» (at any number of ranks)")


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a detached scalar over the ranks (the global batch's loss)."""
    if not active():
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def batch_sum(value: torch.Tensor) -> torch.Tensor:
    """sum over ranks of `value`, differentiable: the backward all-reduces the gradient too,
    so after DDP's 1/W average each rank's share gets exactly d(loss)/d(value)."""
    if not active():
        return value
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(value)


def batch_gather(value: torch.Tensor) -> torch.Tensor:
    """The ranks' `value`s concatenated along dim 0 in rank order (the global batch), detached."""
    if not active():
        return value.detach()
    parts = [torch.empty_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, value.detach().contiguous())
    return torch.cat(parts)


def local_part(value: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a tensor over the global batch (the inverse of `batch_gather`)."""
    ranks = current()
    return value[ranks.shard(value.shape[0])]
