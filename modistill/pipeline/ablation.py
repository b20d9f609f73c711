"""`modistill ablation`: the paper's Table 2 (and other variant sets) over one base config and several seeds.

Each seed runs every chosen variant in its own process (`sweep.run_seeds`); all seeds and variants share one
content-addressed stage folder, so a stage common to several variants (step 1, usually step 2) trains once per
seed, and a re-run reuses every finished stage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modistill.recipes.ablation import resolve_variants

from .session import cache_datasets, load_experiment
from .sweep import run_seeds, run_variants, seed_worker_setup

__all__ = ["AblationRun", "run_ablation"]


@dataclass
class AblationRun:
    """What `run_ablation` trained: the table rows of every seed (each row carries its ``seed``), the seeds
    (None: the config's own seed, one run), the protocol, the study's folder and its wall time."""

    out_dir: Path
    rows: list[dict[str, Any]]
    seeds: list[int] | None
    protocol: str
    elapsed_s: float


def _ablation_seed(seed: int | None, threads: int | None, config: str | dict, overrides: Sequence[str],
                   variants: Sequence[str]) -> list[dict[str, Any]]:
    """One seed of the chosen variants (in a worker process or in-process): their table rows."""
    if seed is not None:
        seed_worker_setup(seed, threads)
    extra = [] if seed is None else [f"train.seed={seed}"]
    base = load_experiment(config, [*overrides, *extra])
    root = Path(base.out_dir)
    # Variants may change the recipe (e.g. the motion set): each stage's dataset checks its own modalities.
    datasets, num_classes, names = cache_datasets(base, stages=())
    sub = "" if seed is None else f"seed{seed}"
    # The config's stage_root (e.g. a demo's stages) lets a study reuse stages trained elsewhere while its
    # table and variant folders go to its own out_dir.
    stages = Path(base.stage_root) if base.stage_root else root / "stages"
    done = run_variants(base, resolve_variants(list(variants)), datasets, num_classes, names,
                        out_dir=lambda v: root / "variants" / v.name / sub, stage_root=stages)
    return [{**r, "seed": base.train.seed} for d in done for r in d.rows]


def run_ablation(config: str | dict, overrides: Sequence[str], variants: Sequence[str],
                 seeds: Sequence[int] | None = None) -> AblationRun:
    """Train ``variants`` (names or sets of `recipes.ablation`) of the experiment ``config`` + ``overrides``.

    ``seeds=None`` runs once with the config's ``train.seed`` (variant folders ``variants/<name>``); a list
    runs every seed in parallel processes, the cores shared between them (folders ``variants/<name>/seed<s>``).
    """
    names = tuple(v.name for v in resolve_variants(list(variants)))  # unknown names fail before any work
    base = load_experiment(config, overrides)
    t0 = time.perf_counter()
    if seeds is None:
        per_seed = [_ablation_seed(None, None, config, tuple(overrides), names)]
    else:
        per_seed = run_seeds(_ablation_seed, list(seeds), config, tuple(overrides), names)
    rows = [r for rs in per_seed for r in rs]
    return AblationRun(Path(base.out_dir), rows, None if seeds is None else list(seeds), base.data.protocol,
                       time.perf_counter() - t0)
