"""`modistill ablation CONFIG [--variants NAME ...]`: run recipe variants (paper Table 2) and tabulate them.

Variants share trained stages (content-addressed), so e.g. step 1 is trained once for the whole table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modistill.core.config import ConfigError

from ._common import add_overrides, fail, setup_logging


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="base experiment YAML")
    parser.add_argument("--variants", nargs="+", default=["table2"],
                        help="variant names or sets (table2, connections, losses, all, motion); "
                        "default: table2")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    add_overrides(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modistill.recipes.ablation import SETS, VARIANTS, resolve_variants, variant_config, variant_rows

    if args.list:
        for v in VARIANTS.values():
            print(f"{v.name:28s} rows {','.join(v.rows):12s} {v.description}")
        print("sets: " + "; ".join(f"{k} = {' '.join(v)}" for k, v in SETS.items()))
        return 0
    setup_logging()
    from modistill.engine import distributed as D
    from modistill.engine.checkpoint import write_text_atomic
    from modistill.recipes.runner import run_recipe
    from modistill.recipes.session import cache_datasets, load_experiment
    from modistill.core.paper import TABLE2, paper_column

    try:
        base = load_experiment(args.config, args.overrides)
        variants = resolve_variants(args.variants)
    except (ConfigError, ValueError) as exc:
        return fail(str(exc))
    root = Path(base.out_dir)
    datasets, num_classes, names = cache_datasets(base)
    rows = []
    for v in variants:
        exp = variant_config(base, v)
        exp.out_dir = str(root / "variants" / v.name)
        exp.stage_root = str(root / "stages")
        runs = run_recipe(exp, datasets, num_classes, only=v.stages, class_names=names)
        rows += variant_rows(v, {n: r.result for n, r in runs.items()})
    main = D.is_main()
    D.cleanup()
    col = paper_column(base.data.protocol)
    # Paper rows are numbers, motion rows "M1".."M5": numbers first, in numeric order, then the labels.
    rows.sort(key=lambda r: (0, int(r["row"]), "", r["variant"]) if str(r["row"]).isdigit()
              else (1, 0, str(r["row"]), r["variant"]))
    lines = ["| row | variant | stage | evaluation | ours | paper |", "|---|---|---|---|---|---|"]
    for r in rows:
        p = TABLE2[r["row"]][col] if r["row"] in TABLE2 else None  # motion rows have no paper number
        lines.append(f"| {r['row']} | {r['variant']} | {r['stage']} | {r['evaluation']} | "
                     f"{100 * r['accuracy']:.2f} | {'-' if p is None else f'{p:.2f}'} |")
    table = "\n".join(lines) + "\n"
    if main:
        write_text_atomic(root / "ablation.json", json.dumps(rows, indent=1))
        write_text_atomic(root / "ablation.md", "# Ablation (paper Table 2 rows)\n\n" + table)
        print(table)
    return 0
