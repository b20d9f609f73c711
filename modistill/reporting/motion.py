"""The motion-distillation table: mean ± std over seeds of each (row, variant), with paired differences."""

from __future__ import annotations

from typing import Any

import numpy as np

from modistill.core.paper import MOTION_ROWS

from .summary import stats

__all__ = ["motion_markdown", "motion_summary"]


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
        return stats([a[s] - b[s] for s in common]) if common else None  # type: ignore[index]

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
                "accuracy": stats([acc[key][s] for s in seeds if s in acc[key]]),
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
