"""`modistill ablation CONFIG [--variants NAME ...]`: run recipe variants (paper Table 2) and tabulate them.

Variants share trained stages (content-addressed), so e.g. step 1 is trained once for the whole table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_overrides, setup_logging


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="base experiment YAML")
    parser.add_argument("--variants", nargs="+", default=["table2"],
                        help="variant names or sets (table2, connections, losses, all, motion); "
                        "default: table2")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    add_overrides(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modistill.recipes.ablation import SETS, VARIANTS, resolve_variants

    if args.list:
        for v in VARIANTS.values():
            print(f"{v.name:28s} rows {','.join(v.rows):12s} {v.description}")
        print("sets: " + "; ".join(f"{k} = {' '.join(v)}" for k, v in SETS.items()))
        return 0
    setup_logging()
    from modistill.engine import distributed as D
    from modistill.pipeline.session import cache_datasets, load_experiment
    from modistill.pipeline.sweep import run_variants
    from modistill.reporting.ablation import write_ablation

    base = load_experiment(args.config, args.overrides)
    variants = resolve_variants(args.variants)
    root = Path(base.out_dir)
    # Variants may change the recipe (e.g. the motion set): each stage's dataset checks its own modalities.
    datasets, num_classes, names = cache_datasets(base, stages=())
    done = run_variants(base, variants, datasets, num_classes, names,
                        out_dir=lambda v: root / "variants" / v.name, stage_root=root / "stages")
    main = D.is_main()
    D.cleanup()
    if main:
        print(write_ablation(root, [r for d in done for r in d.rows], base.data.protocol))
    return 0
