"""Seeding and RNG state: what makes a run, and a resumed run, replay bit for bit.

The trainer re-seeds every random source at the start of each epoch from (seed, epoch, rank), so the
randomness of epoch e does not depend on what ran before it. That is what lets a run killed anywhere inside
epoch e resume from the checkpoint written at the end of epoch e-1 and end exactly where an uninterrupted run
ends. The RNG states are still saved in checkpoints (see `capture_rng_state`) for code that draws numbers
between epochs.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

# Purpose tags keep the streams for the main process, the DataLoader and its workers independent.
MAIN, LOADER, WORKER = 0, 1, 2


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integer parts (numpy SeedSequence, so nearby inputs give unrelated seeds)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def seed_all(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy's global RNG and python's `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class WorkerSeeder:
    """`worker_init_fn` seeding each DataLoader worker from (seed, epoch, rank, worker id).

    A top-level class (not a closure) so it pickles under the spawn start method.
    """

    def __init__(self, seed: int, epoch: int, rank: int) -> None:
        self.seed, self.epoch, self.rank = seed, epoch, rank

    def __call__(self, worker_id: int) -> None:
        seed_all(derive_seed(self.seed, self.epoch, self.rank, WORKER, worker_id))


def epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The DataLoader's generator for one epoch (it draws the workers' base seed)."""
    return torch.Generator().manual_seed(derive_seed(seed, epoch, rank, LOADER))


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def capture_rng_state() -> dict[str, Any]:
    """All RNG states as JSON-ready data (torch states as base64 of their byte tensors; no pickle)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch_cpu": _b64(torch.get_rng_state()),
        "torch_cuda": [_b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {
            "kind": np_state[0],
            "keys": [int(k) for k in np_state[1]],
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss_next": py_state[2]},
    }
    return out


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state` (CUDA states are restored for the devices present in both)."""
    torch.set_rng_state(_unb64(state["torch_cpu"]))
    cuda_states = state.get("torch_cuda") or []
    if cuda_states and torch.cuda.is_available():
        n = min(len(cuda_states), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(_unb64(cuda_states[i]), device=i)
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["kind"],
            np.asarray(npst["keys"], dtype=np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Deterministic kernels while training (restoring the caller's global settings afterwards).

    `warn_only=True`: an op without a deterministic implementation warns instead of stopping a long run.
    cuBLAS needs CUBLAS_WORKSPACE_CONFIG for deterministic matmuls (PyTorch reproducibility notes); it only
    takes effect if set before the first cuBLAS call of the process, so set it early in scripts too.
    """
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_cudnn_det = torch.backends.cudnn.deterministic
    prev_cudnn_bench = torch.backends.cudnn.benchmark
    try:
        if enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch.backends.cudnn.deterministic = prev_cudnn_det
        torch.backends.cudnn.benchmark = prev_cudnn_bench
