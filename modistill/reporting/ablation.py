"""The ablation table: every variant's rows (paper Table 2 numbering) beside the paper's numbers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from modistill.core.atomic import write_text_atomic
from modistill.core.paper import paper_column, row_info, row_order
from modistill.core.schema import VersionedFile

__all__ = ["AblationFile", "ablation_markdown", "write_ablation"]


@dataclass
class AblationFile(VersionedFile):
    """``ablation.json``: rows ``{variant, stage, evaluation, row, accuracy, title}`` and the protocol."""

    KIND: ClassVar[str] = "modistill-ablation"
    rows: list[dict[str, Any]]
    protocol: str = "xsub"


def _order(r: dict[str, Any]) -> tuple:
    # Paper rows by number (readings such as "13-strict" after their row), motion rows "M1".."M5" last.
    return (*row_order(str(r["row"])), r["variant"])


def _paper(row: str, col: int) -> float | None:
    try:
        return row_info(row)[col]
    except KeyError:  # motion rows have no paper number
        return None


def ablation_markdown(rows: list[dict[str, Any]], protocol: str) -> str:
    """Markdown table of ``rows`` (sorted by row), with the paper's number for ``protocol`` where it has one."""
    col = paper_column(protocol)
    lines = ["| row | variant | stage | evaluation | ours | paper |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=_order):
        p = _paper(str(r["row"]), col)
        lines.append(f"| {r['row']} | {r['variant']} | {r['stage']} | {r['evaluation']} | "
                     f"{100 * r['accuracy']:.2f} | {'-' if p is None else f'{p:.2f}'} |")
    return "\n".join(lines) + "\n"


def write_ablation(out: str | os.PathLike, rows: list[dict[str, Any]], protocol: str) -> str:
    """Write ``ablation.json`` and ``ablation.md`` into ``out``; returns the Markdown table."""
    table = ablation_markdown(rows, protocol)
    AblationFile(sorted(rows, key=_order), protocol).write(Path(out) / "ablation.json")
    write_text_atomic(Path(out) / "ablation.md", "# Ablation (paper Table 2 rows)\n\n" + table)
    return table
