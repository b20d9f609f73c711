"""Small wrappers over torch.distributed so the same code runs alone or under `torchrun`.

`torchrun --nproc_per_node N ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; we read
them (env:// init). Backend: nccl when the ranks train on CUDA, gloo on CPU. Every helper is a no-op (or the
identity) when no process group is running, so single-process code needs no branches.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

_INITIALISED_HERE = False


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int
    world_size: int
    local_rank: int


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from exc


def is_distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(device: str = "auto", backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's environment; a no-op for a single process.

    Idempotent: returns the running group's info when one is already initialised.
    `device` is the training device request ("auto", "cpu", "cuda", ...), which picks the backend.
    """
    global _INITIALISED_HERE
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo(0, 1, 0)
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} but this torch build has no torch.distributed support")
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if backend is None:
        backend = "nccl" if wants_cuda else "gloo"
    if wants_cuda:
        # nccl needs each rank bound to its own GPU before the first collective.
        torch.cuda.set_device(local_rank)
    from datetime import timedelta

    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    _INITIALISED_HERE = True
    return DistInfo(rank, world, local_rank)


def env_rank() -> int:
    """This process's global rank as torchrun's environment gives it (RANK; 0 when absent), usable before the
    process group is joined (e.g. to set up logging)."""
    return _env_int("RANK", 0)


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that logs and writes files."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _comm_device(t: torch.Tensor) -> torch.device:
    # nccl only moves CUDA tensors; gloo handles CPU ones.
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device if t.device.type == "cpu" else torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over ranks (a new tensor on `t`'s device; `t` itself is left unchanged)."""
    if not is_distributed():
        return t.clone()
    buf = t.detach().to(_comm_device(t), copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy every buffer of `module` (BatchNorm running statistics...) from rank `src` to all ranks in place.

    DDP keeps parameters in sync but each rank updates its BN statistics from its own shard of the batch; before
    validation and checkpointing the ranks must agree on one model (rank 0's, the one that is saved).
    """
    if not is_distributed():
        return
    for b in module.buffers():
        buf = b.detach().to(_comm_device(b), copy=True)
        dist.broadcast(buf, src=src)
        b.data.copy_(buf.to(b.device))


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of `t` over ranks (a new tensor on `t`'s device)."""
    if not is_distributed():
        return t.clone()
    buf = t.detach().to(_comm_device(t), copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.MAX)
    return buf.to(t.device)


def all_gather_padded(t: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Concatenate per-rank tensors of different lengths along dim 0, in rank order.

    `counts[r]` is rank r's length, known to every rank (e.g. from a deterministic shard), so no extra
    collective is needed to learn the sizes; tensors are padded to the longest for the gather, then trimmed.
    """
    if not is_distributed():
        return t.clone()
    longest = max(counts) if counts else 0
    dev = _comm_device(t)
    pad = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=dev)
    pad[: t.shape[0]] = t.to(dev)
    out = [torch.empty_like(pad) for _ in counts]
    dist.all_gather(out, pad)
    return torch.cat([o[:c] for o, c in zip(out, counts)]).to(t.device)


@contextmanager
def job(device: str = "auto") -> Iterator[None]:
    """The scope of a command's distributed work: join the group on entry, `cleanup()` when the body succeeds.

    Under torchrun the group is joined here (`init_distributed(device)`; a no-op in one process), before the
    body's first line, so that `is_main()` and `barrier()` hold from the start: they are no-ops until a group
    exists, and with the group joined only by the first training stage, `modistill demo` under torchrun
    generated and prepared its data and pretrained its trunks on every rank into the same folders, and the ranks
    then deadlocked (a rank-0-only step against the other rank's collective).

    When it raises, the group is left alone and the error propagates: `cleanup`'s barrier would wait for ranks
    that are still training (one rank failing between collectives made a 2-process run hang until the
    collective timeout, 30 minutes by default, instead of failing), and destroying the group can block on a
    collective in flight. The process exits with the error and torchrun stops the other ranks.
    """
    init_distributed(device)
    yield  # an exception raised in the body propagates from here, past the cleanup
    cleanup()


def cleanup() -> None:
    """Destroy the process group if `init_distributed` created it (call once at the end of a job).

    The group must really be gone (its gloo worker threads joined) before the interpreter shuts down. Each
    gloo worker thread frees the work objects it ran; a barrier's work holds the collectives before it, and
    those hold tensors owned by Python, whose release takes the GIL. A worker that does this while the
    interpreter finalises is ended by CPython inside a C++ destructor: std::terminate, SIGABRT, "terminate
    called without an active exception" with no Python frame, after a successful run (seen in CI under
    torch 2.13; core dump: `AsyncBarrierWork::~AsyncBarrierWork` -> `decref_pyobject` -> `take_gil` ->
    `pthread_exit`). `destroy_process_group` only drops the group from torch's tables: anything else holding
    it keeps it, and its threads, alive. A finished stage's DistributedDataParallel wrapper does, and it sits
    in a reference cycle that only the cycle collector frees; other cyclic garbage can too (a minimal job with
    hand-made all-reduces and no DDP aborted 1 of 60 times, 0 of 60 with a collection before the destroy).
    So: collect first, then the barrier (every rank is done with its collectives), then destroy, which frees
    the group and joins its threads while the interpreter is whole. `benchmarks/ddp_teardown.py` counts the
    aborts of a minimal 2-process job both ways.
    """
    global _INITIALISED_HERE
    if _INITIALISED_HERE and dist.is_available() and dist.is_initialized():
        destroy_group()
    _INITIALISED_HERE = False


def destroy_group() -> None:
    """`cleanup`'s teardown of the default process group, whoever created it (scripts that call
    `init_process_group` themselves use it too): collect the unreachable objects that hold the group, wait for
    every rank, destroy. Objects the caller still references (a DDP wrapper in a local variable) keep the group
    alive: drop them first."""
    gc.collect()
    # Every rank reaches this point before any tears the group down: a rank destroying gloo's pairs while its
    # peer still finishes a collective must not happen either.
    dist.barrier()
    dist.destroy_process_group()
