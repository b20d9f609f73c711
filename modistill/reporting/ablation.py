"""The ablation table: every variant's rows (paper Table 2 numbering) beside the paper's numbers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from modistill.core.atomic import write_text_atomic
from modistill.core.paper import TABLE2, paper_column
from modistill.core.schema import VersionedFile

__all__ = ["AblationFile", "ablation_markdown", "write_ablation"]


@dataclass
class AblationFile(VersionedFile):
    """``ablation.json``: rows ``{variant, stage, evaluation, row, accuracy, title}`` and the protocol."""

    KIND: ClassVar[str] = "modistill-ablation"
    rows: list[dict[str, Any]]
    protocol: str = "xsub"


def _order(r: dict[str, Any]) -> tuple:
    # Paper rows are numbers, motion rows "M1".."M5": numbers first, in numeric order, then the labels.
    row = str(r["row"])
    return (0, int(row), "", r["variant"]) if row.isdigit() else (1, 0, row, r["variant"])


def ablation_markdown(rows: list[dict[str, Any]], protocol: str) -> str:
    """Markdown table of ``rows`` (sorted by row), with the paper's number for ``protocol`` where it has one."""
    col = paper_column(protocol)
    lines = ["| row | variant | stage | evaluation | ours | paper |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=_order):
        p = TABLE2[r["row"]][col] if r["row"] in TABLE2 else None  # motion rows have no paper number
        lines.append(f"| {r['row']} | {r['variant']} | {r['stage']} | {r['evaluation']} | "
                     f"{100 * r['accuracy']:.2f} | {'-' if p is None else f'{p:.2f}'} |")
    return "\n".join(lines) + "\n"


def write_ablation(out: str | os.PathLike, rows: list[dict[str, Any]], protocol: str) -> str:
    """Write ``ablation.json`` and ``ablation.md`` into ``out``; returns the Markdown table."""
    table = ablation_markdown(rows, protocol)
    AblationFile(sorted(rows, key=_order), protocol).write(Path(out) / "ablation.json")
    write_text_atomic(Path(out) / "ablation.md", "# Ablation (paper Table 2 rows)\n\n" + table)
    return table
