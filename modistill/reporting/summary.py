"""Collects finished runs (one per seed) into the figures the report shows, all kept in ``metrics.json``.

A run folder is an experiment ``out_dir``: ``results.json`` (written by the recipe runner), the stage folders
it names (each with ``result.json`` and ``metrics.jsonl``) and optionally ``robustness.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from modistill.core import paper
from modistill.pipeline.files import RobustnessFile, RunResultsFile, StageResultFile

__all__ = ["find_runs", "load_run", "summarize", "gap_closed", "per_class_rows", "group_gaps", "FINAL_ROWS",
           "PER_CLASS_ROWS"]


def find_runs(root: str | Path) -> list[Path]:
    """Run folders under ``root``: itself if it holds ``results.json``, else its sub-folders that do."""
    root = Path(root)
    if (root / "results.json").is_file():
        return [root]
    runs = sorted(p.parent for p in root.glob("*/results.json"))
    if not runs:
        raise FileNotFoundError(f"{root}: no results.json here or in its sub-folders (is this a run folder?)")
    return runs


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """One run: stage results (full ``result.json`` of each stage) and the robustness study if present."""
    run_dir = Path(run_dir)
    results = RunResultsFile.read(run_dir / "results.json")
    stages = {}
    for name, r in results.stages.items():
        f = Path(r["dir"]) / "result.json"
        if not f.is_file():
            raise FileNotFoundError(f"{run_dir}/results.json names {f}, which does not exist")
        stages[name] = StageResultFile.read(f).to_dict()
    rob = run_dir / "robustness.json"
    cfg = run_dir / "config.yaml"
    return {
        "dir": str(run_dir),
        "stages": stages,
        "robustness": RobustnessFile.read(rob).to_dict() if rob.is_file() else None,
        "config": cfg.read_text() if cfg.is_file() else None,
    }


def stats(values: list[float]) -> dict[str, Any]:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return {"mean": None, "std": None, "n": 0, "values": values}
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "n": int(arr.size),
        "values": [float(v) for v in values],
    }


def _row_results(run: dict[str, Any]) -> dict[str, float]:
    """Row label -> test accuracy of this run (main evaluations and the extra ones)."""
    return {ev["paper_row"]: ev["accuracy"] for ev in _evaluations(run)}


def _evaluations(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Every labelled evaluation of a run (main and extra), in stage order."""
    return [ev for st in run["stages"].values() for ev in [st["test"], *st.get("extra", {}).values()]
            if ev.get("paper_row")]


_MODALITY_NAMES = {"rgb": "RGB", "depth": "depth", "flow": "flow"}


def _row_entry(label: str, ev: dict[str, Any] | None, col: int) -> dict[str, Any] | None:
    """What the table shows of a row besides our numbers: model (the paper's row, or our reading of it), the
    evaluation as run and its test input (from the evaluation itself, so a reading that uses depth says so)."""
    try:
        info = paper.row_info(label)
    except KeyError:  # not a row of the paper's tables (e.g. the motion recipe's)
        return None
    inputs = [_MODALITY_NAMES.get(m, m) for m in (ev or {}).get("inputs", [])]
    return {
        "row": label,
        "model": info[0],
        "evaluation": (ev or {}).get("evaluation", ""),
        "input": " + ".join(inputs) if inputs else info[1],
        "paper": info[col],
        "paper_cs": info[2],
        "paper_cv": info[3],
    }


def gap_closed(rgb: float, teacher: float, final: float) -> float:
    """Fraction of the RGB-only -> teacher gap closed by the final RGB-only model (REF §5); NaN if no gap."""
    gap = teacher - rgb
    return (final - rgb) / gap if gap > 0 else float("nan")


# The deployed RGB-only models the report measures against RGB step 1, with the suffix of their keys in the
# summary: the paper's route (row 15) and step 4 from a step 3 without connections (15-nc, the released code's
# route; docs/recipes.md). The demo trains both.
FINAL_ROWS: dict[str, str] = {"15": "", "15-nc": "_nc"}
# The rows whose per-class accuracy the report compares: the two single streams, the teacher and the final models.
PER_CLASS_ROWS = ("1", "2", "8", *FINAL_ROWS)


def per_class_rows(runs: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Row -> (K,) test accuracy per class, mean over the runs, for the rows of :data:`PER_CLASS_ROWS` every run
    has (``None`` for a class without test videos). Shows where each model is right, not only how often."""
    out: dict[str, list[float | None]] = {}
    for row in PER_CLASS_ROWS:
        vals = [ev["per_class"] for r in runs for ev in _evaluations(r)
                if ev["paper_row"] == row and ev.get("per_class") is not None]
        if len(vals) != len(runs) or len({len(v) for v in vals}) != 1:
            continue
        arr = np.asarray([[np.nan if x is None else x for x in v] for v in vals], dtype=float)
        with np.errstate(invalid="ignore"):
            mean = arr.mean(0)  # NaN where a class has no test videos (the same in every run: same split)
        out[row] = [None if math.isnan(x) else float(x) for x in mean]
    return out


def group_gaps(
    per_class: dict[str, list[float | None]], class_names: list[str], groups: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Per class group (e.g. the synthetic data's depth pairs, appearance pairs, image-plane classes): each
    row's mean per-class accuracy, the teacher - RGB gap (rows 8 - 2) and the part of it each final model
    closes: ``closed`` / ``fraction_closed`` for row 15, ``closed_nc`` / ``fraction_closed_nc`` for 15-nc when
    present (:data:`FINAL_ROWS`). Needs rows 2, 8 and 15 in ``per_class``; returns ``[]`` otherwise."""
    if not {"2", "8", "15"} <= set(per_class):
        return []
    index = {n: i for i, n in enumerate(class_names)}
    out = []
    for group, members in groups.items():
        idx = [index[m] for m in members if m in index]
        mean = {row: _mean_of([acc[i] for i in idx]) for row, acc in per_class.items()}
        if not idx or None in (mean["2"], mean["8"], mean["15"]):
            continue
        entry = {"group": group, "classes": [class_names[i] for i in idx], "accuracy": mean,
                 "gap": mean["8"] - mean["2"]}
        for row, suffix in FINAL_ROWS.items():
            if mean.get(row) is None:
                continue
            share = gap_closed(mean["2"], mean["8"], mean[row])
            entry[f"closed{suffix}"] = mean[row] - mean["2"]
            entry[f"fraction_closed{suffix}"] = None if math.isnan(share) else share
        out.append(entry)
    return out


def _mean_of(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def summarize(runs: list[dict[str, Any]], protocol: str = "xsub") -> dict[str, Any]:
    """Mean and spread over runs of every Table 2 row, the gap closed, the noise curve and the checks."""
    per_run = [_row_results(r) for r in runs]
    col = paper.paper_column(protocol)
    first_ev: dict[str, dict[str, Any]] = {}
    for r in runs:
        for ev in _evaluations(r):
            first_ev.setdefault(ev["paper_row"], ev)
    table = []
    for row in sorted(first_ev, key=paper.row_order):
        entry = _row_entry(row, first_ev[row], col)
        if entry is None:
            continue
        vals = [pr.get(row) for pr in per_run]
        table.append(entry | {"ours": stats([v for v in vals if v is not None])})
    out: dict[str, Any] = {
        "protocol": protocol,
        "n_runs": len(runs),
        "table": table,
        "runs": [r["dir"] for r in runs],
    }
    checks = {}
    if all({"1", "2", "8"} <= set(pr) for pr in per_run):
        m = {k: float(np.mean([pr[k] for pr in per_run])) for k in ("1", "2", "8")}
        checks["teacher_beats_both_single_streams"] = bool(m["8"] > max(m["1"], m["2"]))
        checks["teacher_beats_both_single_streams_per_run"] = [bool(pr["8"] > max(pr["1"], pr["2"]))
                                                               for pr in per_run]
    # Each final model: the gap it closes (the paper's number is for its own route, row 15) and whether it
    # beats RGB step 1, in the mean and in every run.
    for row, suffix in FINAL_ROWS.items():
        gaps = [gap_closed(pr["2"], pr["8"], pr[row]) for pr in per_run if {"2", "8", row} <= set(pr)]
        if gaps:
            out[f"gap_closed{suffix}"] = stats(gaps) | {"paper": paper.GAP_CLOSED.get(protocol) if row == "15"
                                                        else None}
        if all({"2", row} <= set(pr) for pr in per_run):
            checks[f"final{suffix}_beats_rgb_step1"] = bool(
                np.mean([pr[row] for pr in per_run]) > np.mean([pr["2"] for pr in per_run])
            )
            checks[f"final{suffix}_beats_rgb_step1_per_run"] = [bool(pr[row] > pr["2"]) for pr in per_run]
    out["checks"] = checks
    pcs = per_class_rows(runs)
    if pcs:
        out["per_class"] = pcs
    robs = [r["robustness"] for r in runs if r.get("robustness")]
    if robs:
        sig = robs[0]["sigma2"]
        out["robustness"] = {
            "sigma2": sig,
            "reading": robs[0].get("reading", "variance"),
            "clip": robs[0].get("clip", False),
            "accuracy": [stats([rb["accuracy"][i] for rb in robs]) for i in range(len(sig))],
            "void": stats([rb["void"] for rb in robs]),
            "rgb_final": stats([rb["rgb_final"] for rb in robs if rb.get("rgb_final") is not None]),
            "paper_cv": {
                "sigma2": list(paper.NOISE_SIGMA2),
                "accuracy": list(paper.NOISE_CV),
                "void": paper.NOISE_VOID_CV,
                "rgb_final": paper.NOISE_RGB_FINAL_CV,
            },
        }
    return out
