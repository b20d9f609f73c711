"""The motion-distillation recipe (flow as the privileged modality), as an ordered list of stages.

OUR RECONSTRUCTION of Lu et al., ICONIP 2020 (known only from its abstract; REF §6), built in the same staged
mechanism as the depth method (depth.py) and compared with MARS (Crasto et al., CVPR 2019) and two-stream
networks:

    motion_flow          flow stream alone (2L input channels), CE: the flow teacher             row M1
    step1_rgb            RGB stream alone, CE: the RGB-only baseline. The very stage of the      row 2
                         depth recipe (same definition, so same key: shared when both methods
                         run on one stage_root)
    motion_two_stream    baseline: RGB (step1_rgb) + flow (motion_flow) streams, late fusion     row M3
                         (mean of logits), fine-tuned jointly with CE on the fused logits;
                         needs flow at test time (like Garcia's step 2 without connections)
    motion_student       the flow teacher FROZEN (no gradient, BatchNorm in eval mode); a        row M4
                         motion-mimicking stream "hall" reading RGB, trained with the relation
                         (Gram) loss + CE, MARS (CE + 50 MSE of pooled features), both, or CE
                         only (the no-distillation control); evaluated on RGB alone
    motion_final         RGB stream (step1_rgb) + student (motion_student), fused by the         row M5
                         attention module (or the mean of logits), fine-tuned on RGB only:
                         the deployed RGB-only model

The student starts from the RGB stage's weights by default (``motion_init="rgb"``): unlike the depth
method's hallucination stream, it cannot start from the teacher, whose first convolution reads 2L flow
channels instead of 3 colours; MARS likewise starts its student from RGB weights. ``motion_init="scratch"``
is the alternative. The control (``motion_loss="none"``) trains the same student from the same weights with
the same data order and epochs, with CE only: the difference between a distilled student and the control
(and between their fused models) is the measured effect of the distillation, not the ensemble effect of
fusing two RGB networks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modistill.distill.terms import LossSpec

from .depth import RecipeConfig, garcia_recipe
from .stages import Evaluation, Stage, StreamPlan, validate_recipe

__all__ = [
    "motion_references",
    "motion_recipe",
    "motion_loss_spec",
    "MOTION_ROWS",
    "motion_summary",
    "motion_markdown",
    "run_motion_demo",
    "DEMO_FLOW_OPTIONS",
]

_LOSS_KIND = {"relation": "relation", "mars": "mars", "both": "relation_mars", "none": "ce"}
_LOSS_TITLE = {
    "relation": "relation (Gram) loss + CE",
    "mars": "MARS (CE + MSE of pooled features)",
    "both": "relation loss + MARS",
    "none": "CE only, no distillation (control)",
}
_FEATURES = ("layer1", "layer2", "layer3", "layer4", "pooled")

# Row labels of the motion table (the paper's Table 2 rows do not apply; row 2 is the shared RGB stage).
MOTION_ROWS: dict[str, tuple[str, str]] = {
    "M1": ("flow teacher (flow stream alone)", "flow"),
    "2": ("RGB stream alone (RGB-only baseline)", "RGB"),
    "M3": ("two-stream RGB + flow, late fusion", "RGB + flow"),
    "M4": ("motion student alone", "RGB"),
    "M5": ("deployed model: RGB + motion student", "RGB"),
}

# The demo's flow (docs/motion.md has the measurements): DIS, ~20-40x cheaper than TV-L1 here, computed at
# 128 px for accuracy and stored at the 64 px cache side. Bound 2 px instead of MARS's 20: the synthetic
# bodies move < 1 px per frame in 64 px crops (99.9th percentile 0.2-1 px), which bound 20 quantises into a
# few levels; chosen on seed 0's validation split (flow-teacher accuracy 28 % with bound 20, 53 % with 2).
DEMO_FLOW_OPTIONS: dict[str, Any] = {"method": "dis", "bound": 2.0, "compute_size": 128}


def motion_loss_spec(cfg: RecipeConfig) -> LossSpec:
    """The student stage's loss for ``cfg.motion_loss`` (student ``"hall"``, frozen teacher ``"flow"``)."""
    if cfg.motion_loss not in _LOSS_KIND:
        raise ValueError(f"recipe.motion_loss must be one of {sorted(_LOSS_KIND)}, got {cfg.motion_loss!r}")
    if cfg.motion_fusion not in ("attention", "mean"):
        raise ValueError(f"recipe.motion_fusion must be 'attention' or 'mean', got {cfg.motion_fusion!r}")
    if cfg.motion_init not in ("rgb", "scratch"):
        raise ValueError(f"recipe.motion_init must be 'rgb' or 'scratch', got {cfg.motion_init!r}")
    bad = [k for k in cfg.relation_layers if k not in _FEATURES]
    if bad:
        raise ValueError(f"recipe.relation_layers: unknown features {bad}; choose among {list(_FEATURES)}")
    kind = _LOSS_KIND[cfg.motion_loss]
    if kind == "ce":
        return LossSpec(kind="ce", classify="hall")
    try:
        return LossSpec(
            kind=kind,
            student="hall",
            teacher="flow",
            relation_layers=dict(cfg.relation_layers),  # type: ignore[arg-type]
            temporal_weight=cfg.temporal_weight,
            mars_alpha=cfg.mars_alpha,
        )
    except ValueError as exc:
        raise ValueError(f"recipe (motion): {exc}") from exc


def motion_recipe(cfg: RecipeConfig) -> list[Stage]:
    """The motion stages of ``cfg`` (see the module docstring); validated."""
    spec = motion_loss_spec(cfg)
    L2 = 2 * cfg.flow_stack
    rgb = next(s for s in garcia_recipe(cfg) if s.name == "step1_rgb")
    flow = Stage(
        name="motion_flow",
        # The channel count is in the title so that stage keys change with the flow stack L.
        title=f"Flow teacher: flow stream alone ({L2} input channels)",
        streams=(StreamPlan("flow", "flow", init="pretrained"),),
        loss=LossSpec(kind="ce", classify="flow"),
        inputs=("flow",),
        evaluate=Evaluation("flow", streams=("flow",), inputs=("flow",), paper_row="M1"),
        paper_row="M1",
    )
    stages = [flow, rgb]
    if cfg.two_stream:
        stages.append(
            Stage(
                name="motion_two_stream",
                title="Two-stream baseline: RGB + flow, late fusion (test needs flow)",
                streams=(
                    StreamPlan("rgb", "rgb", init="step1_rgb/rgb"),
                    StreamPlan("flow", "flow", init="motion_flow/flow"),
                ),
                loss=LossSpec(kind="ce", classify="fused"),
                inputs=("rgb", "flow"),
                evaluate=Evaluation(
                    "rgb+flow", streams=("rgb", "flow"), inputs=("rgb", "flow"), paper_row="M3"
                ),
                paper_row="M3",
            )
        )
    hall = StreamPlan("hall", "rgb", init="step1_rgb/rgb" if cfg.motion_init == "rgb" else "scratch")
    distilled = cfg.motion_loss != "none"
    stages.append(
        Stage(
            name="motion_student",
            title=f"Motion student: {_LOSS_TITLE[cfg.motion_loss]}"
            + (" against the frozen flow teacher" if distilled else "")
            + ("" if cfg.motion_init == "rgb" else ", from scratch"),
            # The control needs no teacher: leaving it out saves its forward pass.
            streams=(
                (StreamPlan("flow", "flow", init="motion_flow/flow", frozen=True), hall)
                if distilled
                else (hall,)
            ),
            loss=spec,
            inputs=("rgb", "flow") if distilled else ("rgb",),
            evaluate=Evaluation("student (rgb)", streams=("hall",), inputs=("rgb",), paper_row="M4"),
            paper_row="M4",
        )
    )
    attention = cfg.motion_fusion == "attention"
    stages.append(
        Stage(
            name="motion_final",
            title=f"Deployed RGB-only model: RGB + student ({cfg.motion_loss}), "
            + ("attention fusion" if attention else "late fusion (mean)"),
            streams=(
                StreamPlan("rgb", "rgb", init="step1_rgb/rgb"),
                StreamPlan("hall", "rgb", init="motion_student/hall"),
            ),
            loss=LossSpec(kind="ce", classify="fused"),
            inputs=("rgb",),
            evaluate=Evaluation(
                "rgb (rgb+student)", streams=("rgb", "hall"), inputs=("rgb",), paper_row="M5"
            ),
            fuse=("rgb", "hall"),
            fusion=cfg.motion_fusion,
            fusion_options=(("reduction", int(cfg.attention_reduction)),) if attention else (),
            paper_row="M5",
        )
    )
    validate_recipe(stages)
    return stages


# ------------------------------------------------------------------------------------------- the demo part


def _stats(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()) if arr.size else None,
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "n": int(arr.size),
        "values": [float(v) for v in arr],
    }


def motion_summary(
    per_seed: dict[int, dict[str, list[dict[str, Any]]]], references: dict[str, str] | None = None
) -> dict[str, Any]:
    """Mean ± std over seeds of every (row, variant) of the motion variants, with paired differences.

    Args:
        per_seed: seed -> variant name -> rows from `ablation.variant_rows` (``row``, ``stage``,
            ``evaluation``, ``accuracy``, plus ``title``). Rows M1, 2 and M3 do not depend on the variant
            (shared stages) and are kept once; M4 / M5 are kept per variant.
        references: variant -> the variant its M4 / M5 rows are compared with, seed by seed (e.g. a distilled
            student -> the no-distillation control; a mean-fusion model -> its attention-fusion twin).
    Returns:
        ``{"rows": [{row, variant, title, accuracy, reference, delta_ref, delta_rgb}], "seeds", "checks"}``:
        ``accuracy`` / ``delta_*`` are ``{"mean", "std" (sample, ddof 1), "n", "values"}`` of fractions;
        ``delta_rgb`` is paired against row 2, the RGB-only baseline.
    """
    references = references or {}
    seeds = sorted(per_seed)
    acc: dict[tuple[str, str], dict[int, float]] = {}
    titles: dict[tuple[str, str], str] = {}
    for seed in seeds:
        for variant, rows in per_seed[seed].items():
            for r in rows:
                key = (r["row"], variant if r["row"] in ("M4", "M5") else "")
                acc.setdefault(key, {})[seed] = float(r["accuracy"])
                titles[key] = r.get("title") or r["evaluation"]
    rgb = acc.get(("2", ""), {})

    def paired(a: dict[int, float], b: dict[int, float] | None) -> dict[str, Any] | None:
        common = [s for s in seeds if s in a and b and s in b]
        return _stats([a[s] - b[s] for s in common]) if common else None  # type: ignore[index]

    order = {"M1": 0, "2": 1, "M3": 2, "M4": 3, "M5": 4}
    out_rows = []
    for key in sorted(acc, key=lambda k: (order.get(k[0], 9), k[0], k[1] in references, k[1])):
        row, variant = key
        ref = references.get(variant) if row in ("M4", "M5") else None
        out_rows.append(
            {
                "row": row,
                "variant": variant,
                "title": titles[key],
                "accuracy": _stats([acc[key][s] for s in seeds if s in acc[key]]),
                "reference": ref if ref and (row, ref) in acc else None,
                "delta_ref": paired(acc[key], acc.get((row, ref))) if ref else None,
                "delta_rgb": paired(acc[key], rgb) if row in ("M4", "M5") else None,
            }
        )
    checks: dict[str, Any] = {}
    flow = acc.get(("M1", ""))
    if flow and rgb:
        checks["flow_teacher_beats_rgb"] = bool(np.mean(list(flow.values())) > np.mean(list(rgb.values())))
    for r in out_rows:
        if r["delta_ref"] is not None:
            checks[f"{r['row']} {r['variant']} beats {r['reference']}"] = bool(r["delta_ref"]["mean"] > 0)
    return {"rows": out_rows, "seeds": seeds, "references": references, "checks": checks}


def _fmt(s: dict[str, Any] | None, signed: bool = False) -> str:
    if not s or s.get("mean") is None:
        return "-"
    sign = "+" if signed else ""
    return f"{100 * s['mean']:{sign}.1f}" + (f" ± {100 * s['std']:.1f}" if s["n"] > 1 else "")


def motion_markdown(summary: dict[str, Any]) -> str:
    """The motion table (Markdown) for the report's extra sections."""
    n = len(summary["seeds"])
    lines = [
        f"Accuracy in % on the test split, mean ± sample std over {n} seed(s) {summary['seeds']}; Δ columns "
        "are paired per seed. The relation loss and the attention fusion are our reconstruction of Lu et al. "
        "2020 (docs/motion.md). The control student is trained exactly like the distilled ones (same initial "
        "weights, data order and epochs) with CE only, so 'Δ ref' against it isolates the distillation's "
        "effect from the ensemble effect of fusing two RGB networks.",
        "",
        "| row | model | variant | test input | accuracy | Δ ref (ref) | Δ RGB-only (row 2) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        inp = MOTION_ROWS.get(r["row"], ("", "?"))[1]
        ref = f"{_fmt(r['delta_ref'], True)} ({r['reference']})" if r["reference"] else "-"
        lines.append(
            f"| {r['row']} | {r['title']} | {r['variant'] or '-'} | {inp} | {_fmt(r['accuracy'])} | {ref} | "
            f"{_fmt(r['delta_rgb'], True)} |"
        )
    if summary["checks"]:
        lines += [""] + [f"- {k.replace('_', ' ')}: **{v}**" for k, v in summary["checks"].items()]
    return "\n".join(lines)


def motion_references(variants: Sequence[Any]) -> dict[str, str]:
    """Variant -> reference variant: a fusion variant -> the same overrides with the default fusion; any
    other distilled variant -> the no-distillation control (``recipe.motion_loss=none``), when present."""
    by_overrides = {tuple(v.overrides): v.name for v in variants}
    control = next((v.name for v in variants if "recipe.motion_loss=none" in v.overrides), None)
    refs: dict[str, str] = {}
    for v in variants:
        base = tuple(o for o in v.overrides if not o.startswith("recipe.motion_fusion="))
        if base != tuple(v.overrides) and base in by_overrides:
            refs[v.name] = by_overrides[base]
        elif control and v.name != control:
            refs[v.name] = control
    return refs


def _motion_seed(
    out: Path,
    base_raw: dict[str, Any],
    seed: int,
    overrides: Sequence[str],
    variants: Sequence[str],
    threads: int | None,
) -> tuple[dict[str, list[dict[str, Any]]], list[str] | None]:
    """One seed of the motion variants (in a worker process or in-process): variant -> table rows."""
    import torch

    from .ablation import resolve_variants, variant_config, variant_rows
    from .runner import run_recipe
    from .session import cache_datasets, load_experiment

    if threads:
        torch.set_num_threads(threads)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format=f"%(asctime)s seed{seed} %(name)s: %(message)s", datefmt="%H:%M:%S"
        )
    base = load_experiment(base_raw, [*overrides, "recipe.name=motion", f"train.seed={seed}"])
    factory, num_classes, names = cache_datasets(base)
    per_variant: dict[str, list[dict[str, Any]]] = {}
    for v in resolve_variants(list(variants)):
        exp = variant_config(base, v)
        exp.out_dir = str(out / "motion" / v.name / f"seed{seed}")
        exp.stage_root = str(out / "stages")
        runs = run_recipe(exp, factory, num_classes, only=v.stages, class_names=names)
        rows = variant_rows(v, {n: r.result for n, r in runs.items()})
        for r in rows:
            r["title"] = runs[r["stage"]].result["title"]
        per_variant[v.name] = rows
    return per_variant, names


def run_motion_demo(
    out: Path,
    base_raw: dict[str, Any],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    variants: Sequence[str] = ("motion_demo",),
) -> dict[str, Any]:
    """Train the motion variants (``ablation.SETS``) over ``seeds`` on the demo cache (flow must be in it).

    Runs go to ``out/motion/<variant>/seed<k>``; stages live in ``out/stages`` (shared with the depth runs,
    so ``step1_rgb`` trains once per seed for both methods). Seeds run as parallel single-threaded processes
    (as the depth demo's seeds, demo.py: small networks scale poorly over threads on a busy machine); under
    torchrun, one after another. Returns ``{"summary", "markdown", "run_root", "class_names"}``.
    """
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    from modistill.engine import distributed as D

    from .ablation import resolve_variants

    chosen = resolve_variants(list(variants))
    names_v = tuple(v.name for v in chosen)
    if D.is_distributed() or len(seeds) <= 1:
        results = [_motion_seed(out, base_raw, s, tuple(overrides), names_v, None) for s in seeds]
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // len(seeds))
        with ProcessPoolExecutor(max_workers=len(seeds), mp_context=mp.get_context("spawn")) as pool:
            futures = [
                pool.submit(_motion_seed, out, base_raw, s, tuple(overrides), names_v, threads) for s in seeds
            ]
            results = [f.result() for f in futures]
    per_seed = {s: rows for s, (rows, _) in zip(seeds, results)}
    summary = motion_summary(per_seed, motion_references(chosen))
    return {
        "summary": summary,
        "markdown": motion_markdown(summary),
        "run_root": out / "motion" / chosen[0].name,
        "class_names": results[0][1] if results else None,
    }
