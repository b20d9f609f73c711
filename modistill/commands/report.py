"""`modistill report RUN_DIR [--out DIR]`: Markdown + HTML report, figures and metrics.json of a run (or of
the seed runs under a folder)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder (with results.json) or a folder of such runs (seeds)")
    parser.add_argument("--out", default=None, help="where to write the report (default: RUN_DIR)")
    parser.add_argument("--protocol", default=None, help="paper column to show (default: the run's protocol)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modistill.pipeline.files import RunDatasetFile
    from modistill.reporting.report import write_report
    from modistill.reporting.summary import find_runs

    names = None
    meta = find_runs(args.run_dir)[0] / "dataset.json"
    if meta.is_file():
        names = RunDatasetFile.read(meta).class_names
    paths = write_report(Path(args.run_dir), args.out, protocol=args.protocol, class_names=names)
    print(f"wrote {paths['markdown']}\n      {paths['html']}\n      {paths['metrics']}")
    return 0
