"""`modistill demo [--quick] [--out DIR] [--method depth|motion|both]`: synthetic NTU-format data -> the
four-step recipe over 3 seeds -> robustness study -> report (DIR/report.md, report.html, metrics.json).
``--method motion`` runs the motion-distillation variants instead (flow added to the cache; docs/motion.md),
``both`` runs the two, with the motion table as its own report section."""

from __future__ import annotations

import argparse

from ._common import add_overrides, setup_logging


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke test on a tiny dataset")
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 0 1 2; quick: 0)")
    parser.add_argument("--workers", type=int, default=2, help="processes for data generation/preparation")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-pretrain", action="store_true",
                        help="train every stream from scratch instead of from the pretrained trunks "
                        "(the stand-in for ImageNet, docs/pretrain.md)")
    parser.add_argument("--method", choices=("depth", "motion", "both"), default="depth",
                        help="privileged modality: depth (the paper's four steps, default), motion (optical "
                        "flow distillation) or both")
    add_overrides(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from modistill.apps.demo import run_demo
    from modistill.engine import distributed as D

    with D.job():
        paths = run_demo(args.out, quick=args.quick, seeds=args.seeds, workers=args.workers,
                         overrides=args.overrides, progress=not args.no_progress, method=args.method,
                         pretrain=not args.no_pretrain)
    if paths:
        print(f"report: {paths['markdown']}\n        {paths['html']}\nmetrics: {paths['metrics']}")
    return 0
