"""The motion part of ``modistill demo --method motion|both``: the motion variants over seeds on the demo cache.

Runs go to ``out/motion/<variant>/seed<k>``; stages live in ``out/stages`` (shared with the depth runs, so
``step1_rgb`` trains once per seed for both methods). Seeds run through the one seed pool (pipeline/sweep.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modistill.pipeline.session import cache_datasets, load_experiment
from modistill.pipeline.sweep import run_seeds, run_variants, seed_worker_setup
from modistill.recipes.ablation import motion_references, resolve_variants
from modistill.reporting.motion import motion_markdown, motion_summary

__all__ = ["DEMO_FLOW_OPTIONS", "run_motion_demo"]

# The demo's flow (docs/motion.md has the measurements): DIS, ~20-40x cheaper than TV-L1 here, computed at
# 128 px for accuracy and stored at the 64 px cache side. Bound 2 px instead of MARS's 20: the synthetic
# bodies move < 1 px per frame in 64 px crops (99.9th percentile 0.2-1 px), which bound 20 quantises into a
# few levels; chosen on seed 0's validation split (flow-teacher accuracy 28 % with bound 20, 53 % with 2).
DEMO_FLOW_OPTIONS: dict[str, Any] = {"method": "dis", "bound": 2.0, "compute_size": 128}


def _motion_seed(seed: int, threads: int | None, out: Path, base_raw: dict[str, Any], overrides: Sequence[str],
                 variants: Sequence[str]) -> tuple[dict[str, list[dict[str, Any]]], list[str] | None]:
    """One seed of the motion variants (in a worker process or in-process): variant -> table rows."""
    seed_worker_setup(seed, threads)
    base = load_experiment(base_raw, [*overrides, "recipe.name=motion", f"train.seed={seed}"])
    datasets, num_classes, names = cache_datasets(base)
    done = run_variants(base, resolve_variants(list(variants)), datasets, num_classes, names,
                        out_dir=lambda v: out / "motion" / v.name / f"seed{seed}", stage_root=out / "stages")
    return {d.variant.name: d.rows for d in done}, names


def run_motion_demo(
    out: Path,
    base_raw: dict[str, Any],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    variants: Sequence[str] = ("motion_demo",),
) -> dict[str, Any]:
    """Train the motion variants (``ablation.SETS``) over ``seeds`` on the demo cache (flow must be in it).

    Returns ``{"summary", "markdown", "run_root", "class_names"}``.
    """
    chosen = resolve_variants(list(variants))
    results = run_seeds(_motion_seed, seeds, out, base_raw, tuple(overrides), tuple(v.name for v in chosen))
    per_seed = {s: rows for s, (rows, _) in zip(seeds, results)}
    summary = motion_summary(per_seed, motion_references(chosen))
    return {
        "summary": summary,
        "markdown": motion_markdown(summary),
        "run_root": out / "motion" / chosen[0].name,
        "class_names": results[0][1] if results else None,
    }
