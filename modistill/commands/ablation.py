"""`modistill ablation CONFIG [--variants NAME ...]`: run recipe variants (paper Table 2) and tabulate them.

Variants share trained stages (content-addressed), so e.g. step 1 is trained once for the whole table.
"""

from __future__ import annotations

import argparse

from ._common import add_overrides, setup_logging


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="base experiment YAML")
    parser.add_argument("--variants", nargs="+", default=["table2"],
                        help="variant names or sets (table2, connections, losses, all, motion); "
                        "default: table2")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                        help="train every variant with each of these seeds (parallel processes sharing the cores) "
                        "and report mean ± std with per-seed values; default: one run with train.seed")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    add_overrides(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modistill.recipes.ablation import SETS, VARIANTS

    if args.list:
        for v in VARIANTS.values():
            print(f"{v.name:28s} rows {','.join(v.rows):12s} {v.description}")
        print("sets: " + "; ".join(f"{k} = {' '.join(v)}" for k, v in SETS.items()))
        return 0
    setup_logging()
    from modistill.engine import distributed as D
    from modistill.pipeline.ablation import run_ablation
    from modistill.reporting.ablation import write_ablation

    with D.job():
        done = run_ablation(args.config, args.overrides, args.variants, args.seeds)
        main = D.is_main()
    if main:
        print(write_ablation(done.out_dir, done.rows, done.protocol, seeds=done.seeds, elapsed_s=done.elapsed_s))
    return 0
