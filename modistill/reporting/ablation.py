"""The ablation table: every variant's rows (paper Table 2 numbering) beside the paper's numbers, as mean ± std
over seeds with the per-seed values when the study ran several seeds."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from modistill.core.atomic import write_text_atomic
from modistill.core.paper import paper_column, row_info, row_order
from modistill.core.schema import VersionedFile

from .summary import stats

__all__ = ["AblationFile", "ablation_markdown", "ablation_summary", "write_ablation"]


@dataclass
class AblationFile(VersionedFile):
    """``ablation.json``: ``rows`` ``{variant, stage, evaluation, row, accuracy, title, seed}`` (one per seed),
    the protocol, the seeds (None: one run with the config's seed), ``summary`` (one entry per row and variant:
    its keys and ``accuracy`` = `summary.stats` over the seeds) and the study's wall time in seconds.
    Version 1 (no seeds, summary or time) reads as one run."""

    KIND: ClassVar[str] = "modistill-ablation"
    VERSION: ClassVar[int] = 2
    rows: list[dict[str, Any]]
    protocol: str = "xsub"
    seeds: list[int] | None = None
    summary: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float | None = None


def _order(r: dict[str, Any]) -> tuple:
    # Paper rows by number (readings such as "13-strict" after their row), motion rows "M1".."M5" last.
    return (*row_order(str(r["row"])), r["variant"])


def _paper(row: str, col: int) -> float | None:
    try:
        return row_info(row)[col]
    except KeyError:  # motion rows have no paper number
        return None


def ablation_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (row, variant, stage, evaluation) of ``rows``, sorted by row: those keys, the title and
    ``accuracy`` = `stats` of its accuracies in seed order (``values`` are per seed, as fractions)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["row"], r["variant"], r["stage"], r["evaluation"]), []).append(r)
    out = []
    for (row, variant, stage, evaluation), rs in groups.items():
        rs = sorted(rs, key=lambda r: r.get("seed") or 0)
        out.append({"row": row, "variant": variant, "stage": stage, "evaluation": evaluation,
                    "title": rs[0].get("title"), "seeds": [r.get("seed") for r in rs],
                    "accuracy": stats([float(r["accuracy"]) for r in rs])})
    return sorted(out, key=_order)


def ablation_markdown(rows: list[dict[str, Any]], protocol: str) -> str:
    """Markdown table of ``rows`` (sorted by row), with the paper's number for ``protocol`` where it has one:
    one accuracy per row for one run, mean ± sample std and the per-seed values for several seeds."""
    col = paper_column(protocol)
    summary = ablation_summary(rows)
    multi = any(s["accuracy"]["n"] > 1 for s in summary)
    if multi:
        lines = ["| row | variant | stage | evaluation | ours, mean ± std | per seed | paper |",
                 "|---|---|---|---|---|---|---|"]
    else:
        lines = ["| row | variant | stage | evaluation | ours | paper |", "|---|---|---|---|---|---|"]
    for s in summary:
        p = _paper(str(s["row"]), col)
        a = s["accuracy"]
        head = f"| {s['row']} | {s['variant']} | {s['stage']} | {s['evaluation']} |"
        paper = "-" if p is None else f"{p:.2f}"
        if multi:
            per_seed = ", ".join(f"{100 * v:.1f}" for v in a["values"])
            lines.append(f"{head} {100 * a['mean']:.1f} ± {100 * a['std']:.1f} | {per_seed} | {paper} |")
        else:
            lines.append(f"{head} {100 * a['mean']:.2f} | {paper} |")
    return "\n".join(lines) + "\n"


def write_ablation(out: str | os.PathLike, rows: list[dict[str, Any]], protocol: str, *,
                   seeds: list[int] | None = None, elapsed_s: float | None = None) -> str:
    """Write ``ablation.json`` and ``ablation.md`` into ``out``; returns the Markdown table."""
    table = ablation_markdown(rows, protocol)
    AblationFile(sorted(rows, key=lambda r: (*_order(r), r.get("seed") or 0)), protocol, seeds,
                 ablation_summary(rows), elapsed_s).write(Path(out) / "ablation.json")
    notes = []
    if seeds:
        notes.append(f"Test accuracy in %, mean ± sample std over seeds {seeds} (per-seed values in seed order).")
    if elapsed_s is not None:
        notes.append(f"Wall time of the study: {elapsed_s / 60:.1f} min.")
    intro = " ".join(notes) + "\n\n" if notes else ""
    write_text_atomic(Path(out) / "ablation.md", "# Ablation (paper Table 2 rows)\n\n" + intro + table)
    return table
