"""Sweeps: recipe variants over one base config, and seeds run as parallel processes.

One pool for every caller (the depth demo, the motion demo, ``modistill ablation``): each seed runs in its own
single-threaded process, the cores shared between them. Why processes and not threads: these small networks
scale poorly over threads, and OpenMP threads sharing a busy core spin-wait (measured on the 2-core machine:
0.14 s per training step with 1 thread, several seconds with 2 threads under load), while independent
processes use every core fully. Under ``torchrun`` (or with one seed) the seeds run one after another in this
process, so every rank takes part in every collective.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from modistill.engine import distributed as D
from modistill.recipes.ablation import Variant, variant_config, variant_rows
from modistill.recipes.experiment import ExperimentConfig

from .runner import StageRun, run_recipe

__all__ = ["VariantRun", "available_cores", "exit_with_parent", "run_seeds", "run_variants", "seed_worker_setup"]

R = TypeVar("R")


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def seed_worker_setup(seed: int, threads: int | None) -> None:
    """In a seed's worker: limit torch's threads and prefix its log lines with the seed."""
    if threads:
        torch.set_num_threads(threads)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s seed{seed} %(name)s: %(message)s",
                            datefmt="%H:%M:%S")


def exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """In a seed worker: exit as soon as the process that started it is gone (its parent pid changes).

    Why: a killed demo or ablation (SIGTERM, SIGKILL, a closed terminal) does not take spawned workers with it;
    they trained on as orphans for the rest of the run, using the cores and writing into the stage folders a
    resumed run writes into too."""

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)  # no cleanup: the stage checkpoints are written atomically, a resume continues

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_seeds(fn: Callable[..., R], seeds: Sequence[int], *args: Any) -> list[R]:
    """``[fn(seed, threads, *args) for seed in seeds]``, the seeds in parallel spawned processes.

    ``threads`` is the per-process torch thread count (cores // seeds), or None when the seeds run in this
    process (distributed runs, a single seed). ``fn`` and ``args`` must be picklable (a module-level function).
    """
    if D.is_distributed() or len(seeds) <= 1:
        return [fn(s, None, *args) for s in seeds]
    threads = max(1, available_cores() // len(seeds))
    with ProcessPoolExecutor(max_workers=len(seeds), mp_context=mp.get_context("spawn"),
                             initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(fn, s, threads, *args) for s in seeds]
        return [f.result() for f in futures]


@dataclass
class VariantRun:
    """One finished variant: its runs (stage name -> StageRun) and its table rows (`variant_rows`)."""

    variant: Variant
    runs: dict[str, StageRun]
    rows: list[dict[str, Any]]


def run_variants(
    base: ExperimentConfig,
    variants: Sequence[Variant],
    datasets: Any,
    num_classes: int,
    class_names: Sequence[str] | None,
    out_dir: Callable[[Variant], Path],
    stage_root: Path,
) -> list[VariantRun]:
    """Train each variant of ``base`` (only the stages it needs) into ``out_dir(variant)``; every variant
    shares ``stage_root``, so the content-addressed stages they have in common train once."""
    done = []
    for v in variants:
        exp = variant_config(base, v)
        exp.out_dir = str(out_dir(v))
        exp.stage_root = str(stage_root)
        runs = run_recipe(exp, datasets, num_classes, only=v.stages, class_names=class_names)
        rows = variant_rows(v, {n: r.result for n, r in runs.items()})
        for r in rows:
            r["title"] = runs[r["stage"]].result["title"]
        done.append(VariantRun(v, runs, rows))
    return done
