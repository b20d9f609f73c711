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

from .experiment import ExperimentConfig

__all__ = ["Variant", "VARIANTS", "SETS", "motion_references", "resolve_variants", "variant_config", "variant_rows"]


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: tuple[str, ...]
    stages: tuple[str, ...] | None  # None: every stage of the recipe
    rows: tuple[str, ...]  # the Table 2 rows this variant produces


_TO3 = ("step1_rgb", "step1_depth", "step2", "step3")
_TO2 = ("step1_rgb", "step1_depth", "step2")

VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("paper", "the four steps with the paper's defaults", (), None, ("1", "2", "6", "7", "8", "13", "15")),
    Variant("step2_no_connections", "step 2 without cross-stream connections", ("recipe.connections=false",),
            _TO2, ("9",)),
    Variant("step3_eq3_no_connections", "step 3 with eq. 3 only, no connections",
            ("recipe.step3_loss=hall", "recipe.step3_connections=false"), _TO3, ("10",)),
    Variant("step3_eq3", "step 3 with eq. 3 only", ("recipe.step3_loss=hall",), _TO3, ("11",)),
    Variant("step3_gd", "step 3 with eq. 5-6 only (Table 2's 'eq. 4')", ("recipe.step3_loss=gd",), _TO3, ("12",)),
    Variant("step3_no_connections", "step 3 with eq. 7, no connections (the released code)",
            ("recipe.step3_connections=false",), _TO3, ("14",)),
    Variant("hoffman_eq3", "Hoffman et al. one-step baseline, eq. 3",
            ("recipe.name=hoffman", "recipe.hoffman_loss=hall"), None, ("3",)),
    Variant("hoffman_gd", "Hoffman et al. one-step baseline, eq. 5",
            ("recipe.name=hoffman", "recipe.hoffman_loss=gd"), None, ("4",)),
    Variant("hoffman_eq7", "Hoffman et al. one-step baseline, eq. 7",
            ("recipe.name=hoffman", "recipe.hoffman_loss=eq7"), None, ("5",)),
    Variant("inverted", "inverted connections RGB -> depth (supplement Table 1)",
            ("recipe.direction=rgb_to_depth",), None, ("8", "13", "15")),
    Variant("released", "released-code variants: relu(a) + a*relu(m) connections, eq. 3 sum x0.01 on layer4, "
            "student temperature", ("recipe.variant=released", "recipe.hall_reduction=sum",
                                    "recipe.hall_layers={layer4: 0.01}", "recipe.student_temperature=true"),
            None, ("8", "13", "15")),
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
    "table2": ("paper", "hoffman_eq3", "hoffman_gd", "hoffman_eq7", "step2_no_connections",
               "step3_eq3_no_connections", "step3_eq3", "step3_gd", "step3_no_connections"),
    "connections": ("paper", "step2_no_connections", "step3_no_connections", "inverted"),
    "losses": ("paper", "step3_eq3", "step3_gd"),
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
