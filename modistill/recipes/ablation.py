"""The paper's ablation (Garcia et al. 2018 Table 2, supplement Table 1) as named recipe variants.

Each variant is a set of config overrides plus the stages it needs; all variants share one ``out_dir``, so the
content-addressed stages they have in common (step 1, often step 2) are trained once (runner.py).

The ``motion_*`` variants ablate the motion-distillation recipe (recipes/motion.py, our reconstruction of
Lu et al. 2020, REF §6): its rows are labelled ``M1``..``M5`` (row ``2`` is the shared RGB stage) and they
need a cache with flow (``modistill prepare --flow``). Set ``motion`` holds them; ``all`` stays the depth
method's variants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modistill.core.config import apply_overrides

from .depth import RELEASED_PRESET
from .experiment import ExperimentConfig

__all__ = ["Variant", "VARIANTS", "SETS", "HALL_WEIGHTS", "motion_references", "resolve_variants",
           "variant_config", "variant_rows"]


# The weights of eq. 3 (per-sample squared norm) swept on validation (variants hall_w<weight>, set eq3_scale).
HALL_WEIGHTS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: tuple[str, ...]
    stages: tuple[str, ...] | None  # None: every stage of the recipe
    rows: tuple[str, ...]  # the Table 2 rows this variant produces


_TO3 = ("step1_rgb", "step1_depth", "step2", "step3")
_TO2 = ("step1_rgb", "step1_depth", "step2")
_S3 = ("13", "13-strict")  # step 3 with connections: hall with depth injected, and alone on RGB
_S4 = ("13-init", "15")  # the step-4 model before and after fine-tuning

VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("paper", "the four steps with the paper's defaults", (), None,
            ("1", "2", "6", "7", "6-alone", "7-alone", "8", *_S3, *_S4)),
    Variant("step2_no_connections", "step 2 without cross-stream connections", ("recipe.connections=false",),
            _TO2, ("9",)),
    Variant("step3_eq3_no_connections", "step 3 with eq. 3 only, no connections",
            ("recipe.step3_loss=hall", "recipe.step3_connections=false"), _TO3, ("10",)),
    Variant("step3_eq3", "step 3 with eq. 3 only", ("recipe.step3_loss=hall",), _TO3, ("11", "11-strict")),
    Variant("step3_gd", "step 3 with eq. 5-6 only (Table 2's 'eq. 4')", ("recipe.step3_loss=gd",), _TO3,
            ("12", "12-strict")),
    Variant("step3_no_connections", "step 3 with eq. 7, no connections (as the released code)",
            ("recipe.step3_connections=false",), _TO3, ("14",)),
    Variant("step4_from_no_connections", "step 3 without connections, then step 4 from it",
            ("recipe.step3_connections=false",), None, ("14", "14-init", "15-nc")),
    Variant("hoffman_eq3", "Hoffman et al. one-step baseline, eq. 3 (+ CE on the hall classifier)",
            ("recipe.name=hoffman", "recipe.hoffman_loss=hall"), None, ("3",)),
    Variant("hoffman_gd", "Hoffman et al. one-step baseline, eq. 5",
            ("recipe.name=hoffman", "recipe.hoffman_loss=gd"), None, ("4",)),
    Variant("hoffman_eq7", "Hoffman et al. one-step baseline, eq. 7",
            ("recipe.name=hoffman", "recipe.hoffman_loss=eq7"), None, ("5",)),
    Variant("inverted", "inverted connections RGB -> depth (supplement Table 1)",
            ("recipe.direction=rgb_to_depth",), None, ("6a", "7a", "8a", "13a", "13a-strict", "13a-init", "15a")),
    Variant("released", "the released code exactly (RELEASED_PRESET): additive connections in step 2, step 3 "
            "without connections, eq. 3 sum x0.01 on layer4, student temperature, step 4 late fusion",
            RELEASED_PRESET, None, ("6", "7", "8", "14", "14-init", "15-nc")),
    Variant("step3_select_strict", "step 3 selected on the hall stream alone on RGB (the former reading)",
            ("recipe.step3_select=strict",), None, (*_S3, *_S4)),
    # What the hall stream receives in step 4 for its step-3 depth connections (docs/recipes.md).
    *[Variant(f"step4_hall_{m}", f"step 4: the hall stream's missing depth source -> {m}",
              (f"recipe.step4_hall_source={m}",), None, _S4) for m in ("drop", "zero", "learned")],
    # The same comparison in the released code's additive form relu(a) + a*relu(m), whose relu(a) path survives.
    Variant("additive", "eq. 2 in the released additive form, otherwise the paper", ("recipe.variant=released",),
            None, ("8", *_S3, *_S4)),
    Variant("additive_hall_drop", "additive form, step 4 with the hall stream's depth source dropped",
            ("recipe.variant=released", "recipe.step4_hall_source=drop"), None, _S4),
    Variant("additive_no_connections", "additive form, step 3 without connections, then step 4",
            ("recipe.variant=released", "recipe.step3_connections=false"), None, ("14", "14-init", "15-nc")),
    # The scale of eq. 3 (docs/losses.md): the weight of the per-sample squared norm, chosen on validation.
    *[Variant(f"hall_w{w:g}", f"eq. 3 per-sample squared norm, weight {w:g}", (f"recipe.hall_layers={{layer4: {w}}}",),
              None, (*_S3, *_S4)) for w in HALL_WEIGHTS],
    Variant("hall_mean", "eq. 3 as a mean over every element, weight 1 (the former default)",
            ("recipe.hall_reduction=mean", "recipe.hall_layers={layer4: 1.0}"), None, (*_S3, *_S4)),
    Variant("hall_released_sum", "eq. 3 as the released code: sum over everything, weight 0.01",
            ("recipe.hall_reduction=sum", "recipe.hall_layers={layer4: 0.01}"), None, (*_S3, *_S4)),
]}
_DEPTH_VARIANTS = tuple(VARIANTS)

_M = ("recipe.name=motion",)
_MS = ("motion_flow", "step1_rgb", "motion_student", "motion_final")
VARIANTS.update({v.name: v for v in [
    Variant("motion_relation", "motion distillation: relation loss, attention fusion; flow teacher, RGB-only "
            "and two-stream baselines", _M, None, ("M1", "2", "M3", "M4", "M5")),
    Variant("motion_none", "control: the same student trained with CE only (no distillation)",
            (*_M, "recipe.motion_loss=none"), ("step1_rgb", "motion_student", "motion_final"), ("M4", "M5")),
    Variant("motion_mars", "MARS baseline: CE + 50 MSE of pooled features", (*_M, "recipe.motion_loss=mars"),
            _MS, ("M4", "M5")),
    Variant("motion_both", "relation loss + MARS", (*_M, "recipe.motion_loss=both"), _MS, ("M4", "M5")),
    Variant("motion_mean", "relation student, late fusion (mean of logits) instead of attention",
            (*_M, "recipe.motion_fusion=mean"), _MS, ("M5",)),
    Variant("motion_temporal", "relation loss plus the frame-to-frame relation term (weight 1)",
            (*_M, "recipe.temporal_weight=1.0"), _MS, ("M4", "M5")),
    Variant("motion_scratch", "relation student trained from scratch instead of from the RGB stage",
            (*_M, "recipe.motion_init=scratch"), _MS, ("M4", "M5")),
]})

SETS: dict[str, tuple[str, ...]] = {
    # Every row of the paper's Table 2 and of supplement Table 1 (the documented full study).
    "table2": ("paper", "hoffman_eq3", "hoffman_gd", "hoffman_eq7", "step2_no_connections",
               "step3_eq3_no_connections", "step3_eq3", "step3_gd", "step4_from_no_connections", "inverted"),
    "connections": ("paper", "step2_no_connections", "step4_from_no_connections", "inverted"),
    "losses": ("paper", "step3_eq3", "step3_gd"),
    # Step 4 reached from step 3 with and without connections, in both forms of eq. 2 (docs/recipes.md).
    "step4_sources": ("paper", "step3_select_strict", "step4_hall_drop", "step4_hall_zero", "step4_hall_learned",
                      "step4_from_no_connections", "additive", "additive_hall_drop", "additive_no_connections"),
    "eq3_scale": (*[f"hall_w{w:g}" for w in HALL_WEIGHTS], "hall_mean", "hall_released_sum"),
    "all": _DEPTH_VARIANTS,
    "motion": ("motion_relation", "motion_none", "motion_mars", "motion_both", "motion_mean"),
    # What `modistill demo --method motion` trains (docs/motion.md): the baselines, MARS, relation, the
    # control and the fusion comparison.
    "motion_demo": ("motion_relation", "motion_none", "motion_mars", "motion_mean"),
}


def resolve_variants(names: list[str]) -> list[Variant]:
    """Variant or set names (``table2``, ``connections``, ``losses``, ``all``, ``motion``) -> variants."""
    out: dict[str, Variant] = {}
    for n in names:
        if n in SETS:
            out.update({v: VARIANTS[v] for v in SETS[n]})
        elif n in VARIANTS:
            out[n] = VARIANTS[n]
        else:
            raise ValueError(f"unknown ablation variant or set {n!r}; variants: {sorted(VARIANTS)}, "
                             f"sets: {sorted(SETS)}")
    return list(out.values())


def variant_config(base: ExperimentConfig, v: Variant) -> ExperimentConfig:
    """``base`` with the variant's overrides (a copy; ``base`` is untouched)."""
    return apply_overrides(base, list(v.overrides))


def variant_rows(v: Variant, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The table rows of a finished variant: one per evaluation whose paper row the variant produces."""
    rows = []
    for st in results.values():
        for ev in [st["test"], *st.get("extra", {}).values()]:
            if ev.get("paper_row") in v.rows:
                rows.append({"variant": v.name, "stage": st["stage"], "evaluation": ev["evaluation"],
                             "row": ev["paper_row"], "accuracy": ev["accuracy"]})
    return rows


def motion_references(variants: Sequence[Variant]) -> dict[str, str]:
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
