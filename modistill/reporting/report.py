"""Writes the report of one or more runs: ``report.md``, a self-contained ``report.html`` (figures inlined),
the PNG figures and ``metrics.json`` holding every number the report shows."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from modistill.core.atomic import write_text_atomic
from modistill.core.schema import VersionedFile

from . import figures
from .summary import FINAL_ROWS, find_runs, group_gaps, load_run, summarize


@dataclass
class MetricsFile(VersionedFile):
    """``metrics.json``: every number the report shows (``summary``: the output of `summarize` plus the
    caller's extra metrics, e.g. the demo's timings)."""

    KIND: ClassVar[str] = "modistill-report-metrics"
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        # Flat: the summary's keys at the top level, beside the header, for readers outside Python.
        return {**self.summary, "format": self.KIND, "version": self.VERSION}

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "<dict>") -> MetricsFile:
        cls.check_header(data, origin)
        return cls({k: v for k, v in data.items() if k not in ("format", "version")})

__all__ = ["write_report", "render_markdown", "ROWS_NOTE"]

ROWS_NOTE = (
    "Row labels: numbers are the paper's Table 2 rows (suffix `a`: the inverted direction, supplement Table 1). "
    "How the paper evaluated row 13 is not written (REF §3), so step 3 with connections is reported three ways: "
    "`13` = the hallucination stream in the graph it trained in, the frozen depth stream injecting depth (the "
    "released code's reading: **it uses depth at test time**; also the metric its best epoch is selected on), "
    "`13-strict` = the hallucination stream alone on RGB, `13-init` = the step-4 model before fine-tuning, on "
    "RGB only (the paper's \"full model before the fine-tuning step\"). `6`/`7` are each stream's logits inside "
    "the step-2 model (connections active), `-alone` the stream run alone; `15-nc` is step 4 from a step 3 "
    "without connections."
)


def _ours(s: dict[str, Any]) -> str:
    if s.get("mean") is None:
        return "-"
    if s["n"] > 1:
        return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
    return f"{100 * s['mean']:.1f}"


_PER_CLASS_HEAD = {"1": "1 depth", "2": "2 RGB", "8": "8 teacher", "15": "15 final",
                   "15-nc": "15-nc final (step 3 without connections)"}
# The route of each final model (`summary.FINAL_ROWS`), as the gap lines name it.
_ROUTE = {"15": "the paper's route", "15-nc": "step 4 from a step 3 without connections"}


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.0f}"


def _per_class_lines(summary: dict[str, Any]) -> list[str]:
    """Per-class test accuracy, by the class names of the data when known: rows 1, 2, 8 and 15 side by side
    (mean over the runs) when the runs have them, else the final model of the first run; then the gap per
    class group when groups were given."""
    conf, names = summary.get("final_confusion"), summary.get("class_names")
    if not conf or not names or len(names) != len(conf):
        return []
    pcs = summary.get("per_class") or {}
    support = [sum(row) for row in conf]
    if not pcs:
        lines = ["## Per-class test accuracy (final model, first run)", "", "| class | accuracy | test videos |",
                 "|---|---|---|"]
        for i, (name, row) in enumerate(zip(names, conf)):
            acc = "-" if support[i] == 0 else f"{100 * row[i] / support[i]:.1f}"
            lines.append(f"| {name} | {acc} | {support[i]} |")
        return lines + [""]
    rows = list(pcs)
    finals = [r for r in FINAL_ROWS if {"2", r} <= set(rows)]  # a gain over RGB step 1 column for each
    lines = [
        "## Per-class test accuracy (mean over runs)", "",
        "Where each model is right: the single streams (rows 1, 2), the teacher (8) and the final RGB-only "
        "model(s) (15; 15-nc: from a step 3 without connections); the last column(s): what each final model "
        "gains over RGB step 1, in points.", "",
        "| class | test videos | " + " | ".join(_PER_CLASS_HEAD[r] for r in rows)
        + "".join(f" | {r} − 2" for r in finals) + " |",
        "|---|---|" + "---|" * (len(rows) + len(finals)),
    ]
    for i, name in enumerate(names):
        cells = [_pct(pcs[r][i]) for r in rows]
        for r in finals:
            a, b = pcs[r][i], pcs["2"][i]
            cells.append("-" if a is None or b is None else f"{100 * (a - b):+.0f}")
        lines.append(f"| {name} | {support[i]} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines + _group_lines(summary.get("class_groups") or [], rows)


def _group_lines(groups: list[dict[str, Any]], rows: list[str]) -> list[str]:
    """The RGB-to-teacher gap per class group (`summary.group_gaps`), with each row's mean accuracy and the part
    of the gap each final model closes."""
    if not groups:
        return []
    finals = [(r, suffix) for r, suffix in FINAL_ROWS.items() if f"closed{suffix}" in groups[0]]
    lines = [
        "### The gap per class group", "",
        "Mean per-class accuracy of each group; gap = teacher − RGB step 1 (rows 8 − 2), closed = final − "
        "RGB step 1 (rows 15 − 2, and 15-nc − 2 where run), in points.", "",
        "| group | classes | " + " | ".join(_PER_CLASS_HEAD[r] for r in rows) + " | gap | "
        + " | ".join(f"closed by {r} | share" for r, _ in finals) + " |",
        "|---|---|" + "---|" * (len(rows) + 1 + 2 * len(finals)),
    ]
    for g in groups:
        cells = []
        for _, suffix in finals:
            share = g.get(f"fraction_closed{suffix}")
            cells += [f"{100 * g[f'closed{suffix}']:+.1f}", "-" if share is None else f"{100 * share:.0f} %"]
        lines.append(
            f"| {g['group']} | {', '.join(g['classes'])} | "
            + " | ".join(_pct(g["accuracy"][r]) for r in rows)
            + f" | {100 * g['gap']:.1f} | " + " | ".join(cells) + " |"
        )
    return lines + [""]


def render_markdown(
    summary: dict[str, Any], figs: dict[str, str], extra: dict[str, Any] | None = None
) -> str:
    """The report as Markdown (figures referenced by relative file name)."""
    extra = extra or {}
    proto = summary["protocol"]
    col = "cross-view" if proto == "xview" else "cross-subject"
    n = summary["n_runs"]
    lines = [f"# {extra.get('title', 'modistill report')}", ""]
    if extra.get("intro"):
        lines += [extra["intro"], ""]
    lines += [
        f"Runs: {n} ({'mean ± sample std over seeds' if n > 1 else 'single run'}); protocol: `{proto}`. "
        f"Accuracies in %. The paper's NTU RGB+D numbers ({col}) are shown for reference only: they come from "
        "a different dataset and backbone, so compare trends, not values.",
        "",
        "## Results per step (paper Table 2 rows)",
        "",
        f"| row | model | evaluation | test input | ours | paper (NTU {col}) |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["table"]:
        paper_txt = "-" if r["paper"] is None else f"{r['paper']:.2f}"
        lines.append(f"| {r['row']} | {r['model']} | {r.get('evaluation', '')} | {r['input']} | "
                     f"{_ours(r['ours'])} | {paper_txt} |")
    lines += ["", ROWS_NOTE, ""]
    gap_lines = []
    for row, suffix in FINAL_ROWS.items():
        g = summary.get(f"gap_closed{suffix}")
        if g is None:
            continue
        gap_lines.append(f"- row {row}, {_ROUTE[row]}: ({row} − 2) / (8 − 2) = **{_ours(g)} %** of the gap"
                         + (f" (paper: {100 * g['paper']:.0f} % on NTU {col})" if g.get("paper") else "")
                         + f"; per run: {', '.join(_pct(v) for v in g['values'])} %")
    if gap_lines:
        lines += ["## Gap closed by the RGB-only model", "",
                  "(final − RGB step 1) / (teacher − RGB step 1), per final RGB-only model:", "", *gap_lines, ""]
    checks = summary.get("checks") or {}
    if checks:
        lines += ["## Checks", ""]
        for k, v in checks.items():
            lines.append(f"- {k.replace('_', ' ')}: **{v}**")
        lines.append("")
    rob = summary.get("robustness")
    if rob:
        lines += [
            "## Robustness to depth noise (paper Table 3)",
            "",
            "Step-2 teacher with multiplicative noise I·n on its depth input (image in [0, 1]); each level v of "
            "the table is read as "
            + ("the standard deviation of n ~ N(1, v) (the released code's reading)"
               if rob.get("reading") == "std" else "the variance σ² of n ~ N(1, σ) (the paper's column header)")
            + (", the noisy image saturated to [0, 1] (as the released code)." if rob.get("clip")
               else ", unclipped."),
            "",
            "| level v | ours | paper (NTU cross-view) |",
            "|---|---|---|",
        ]
        paper_acc = dict(zip(rob["paper_cv"]["sigma2"], rob["paper_cv"]["accuracy"]))
        for s, a in zip(rob["sigma2"], rob["accuracy"]):
            p = paper_acc.get(s)
            lines.append(f"| {s:g} | {_ours(a)} | {'-' if p is None else f'{p:.2f}'} |")
        lines.append(f"| void depth | {_ours(rob['void'])} | {rob['paper_cv']['void']:.2f} |")
        lines.append(
            f"| final RGB-only model | {_ours(rob['rgb_final'])} | {rob['paper_cv']['rgb_final']:.2f} |"
        )
        lines.append("")
    lines += _per_class_lines(summary)
    if figs:
        lines += ["## Figures", ""]
        for title, f in figs.items():
            lines += [f"### {title}", "", f"![{title}]({f})", ""]
    for section, body in (extra.get("sections") or {}).items():
        lines += [f"## {section}", "", body, ""]
    lines += ["Every number above is also in `metrics.json`."]
    return "\n".join(lines) + "\n"


def _markdown_to_html(md: str, folder: Path) -> str:
    """A small converter for the Markdown this module writes (headings, tables, lists, images, bold, code),
    inlining images as base64 so the HTML file stands alone."""
    out: list[str] = []
    in_table = in_list = False

    def inline(text: str) -> str:
        t = html.escape(text)
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", t)

    for line in md.splitlines():
        if in_table and not line.startswith("|"):
            out.append("</table>")
            in_table = False
        if in_list and not line.startswith("- "):
            out.append("</ul>")
            in_list = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
        elif line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
        elif m := re.match(r"!\[(.*)\]\((.+)\)", line):
            data = base64.b64encode((folder / m.group(2)).read_bytes()).decode()
            out.append(f'<img alt="{html.escape(m.group(1))}" src="data:image/png;base64,{data}">')
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    if in_table:
        out.append("</table>")
    if in_list:
        out.append("</ul>")
    style = (
        "body{font-family:sans-serif;max-width:980px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
        "th{background:#f0f0f0}img{max-width:100%}code{background:#f4f4f4;padding:1px 3px}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>modistill report</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n"
    )


def write_report(
    root: str | Path,
    out_dir: str | Path | None = None,
    *,
    protocol: str | None = None,
    class_names: list[str] | None = None,
    class_groups: dict[str, list[str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Summarise the run(s) under ``root`` and write the report into ``out_dir`` (default: ``root``).
    ``class_groups`` (group name -> class names, e.g. the synthetic data's class kinds) adds the
    RGB-to-teacher gap per group.

    Returns the written paths: ``markdown``, ``html``, ``metrics`` and one per figure.
    """
    runs = [load_run(r) for r in find_runs(root)]
    out = Path(out_dir or root)
    out.mkdir(parents=True, exist_ok=True)
    if protocol is None:
        m = re.search(r"protocol:\s*(\w+)", runs[0].get("config") or "")
        protocol = m.group(1) if m else "xsub"
    summary = summarize(runs, protocol)
    first = runs[0]["stages"]
    stage_dirs = {name: st["dir"] for name, st in first.items()}
    figs: dict[str, str] = {}
    paths: dict[str, Path] = {}
    p = figures.loss_curves(stage_dirs, out / "loss_curves.png")
    figs["Training loss and validation accuracy (first run)"] = p.name
    hp = figures.hall_curve(stage_dirs, out / "hall_loss.png")
    if hp:
        figs["Hallucination loss L_hall (first run)"] = hp.name
    if summary.get("robustness"):
        figs["Depth-noise robustness"] = figures.noise_curve(
            summary["robustness"], out / "noise_curve.png"
        ).name
    final = first.get("step4") or next(reversed(first.values()))
    figs[f"Confusion matrix: {final['title']} (first run, test)"] = figures.confusion_figure(
        final["test"]["confusion"], class_names, out / "confusion.png", title=final["title"]
    ).name
    for title, name in figs.items():
        paths[title] = out / name
    summary["final_confusion"] = final["test"]["confusion"]
    summary["class_names"] = class_names
    if class_groups and class_names and summary.get("per_class"):
        summary["class_groups"] = group_gaps(summary["per_class"], class_names, class_groups)
    if extra and extra.get("metrics"):
        summary.update(extra["metrics"])
    md = render_markdown(summary, figs, extra)
    write_text_atomic(out / "report.md", md)
    write_text_atomic(out / "report.html", _markdown_to_html(md, out))
    MetricsFile(json.loads(json.dumps(summary, default=float))).write(out / "metrics.json")
    paths.update(markdown=out / "report.md", html=out / "report.html", metrics=out / "metrics.json")
    return paths
