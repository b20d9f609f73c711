"""`modistill train CONFIG [--stage NAME ...] [--resume] [KEY=VALUE ...]`: run a staged recipe.

Works unchanged under `torchrun --nproc_per_node N -m modistill.cli train CONFIG` (DistributedDataParallel;
gloo on CPU, nccl on GPU): every rank runs the same stages, rank 0 writes.
"""

from __future__ import annotations

import argparse

from modistill.core.config import ConfigError

from ._common import add_overrides, fail, setup_logging


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML (see configs/)")
    parser.add_argument(
        "--stage",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this stage (repeatable); the stages it needs must be finished",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue a killed stage from its last checkpoint"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and the stages")
    add_overrides(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from modistill.core.config import to_yaml
    from modistill.engine import distributed as D
    from modistill.pipeline.runner import run_recipe
    from modistill.pipeline.session import cache_datasets, load_experiment
    from modistill.recipes.experiment import build_recipe
    from modistill.recipes.stages import stage_to_dict

    try:
        exp = load_experiment(args.config, args.overrides)
    except ConfigError as exc:
        return fail(str(exc))
    if args.dry_run:
        print(to_yaml(exp))
        for st in build_recipe(exp.recipe):
            d = stage_to_dict(st)
            print(
                f"- {st.name}: {st.title}\n    trains {list(st.trainable)}, frozen {list(st.frozen)}, "
                f"inputs {list(st.inputs)}, loss {d['loss']['kind']}, "
                f"init {[(s.name, s.init) for s in st.streams]}, "
                f"connections {[(c.source, c.target, list(c.stages)) for c in st.connections]}"
                + (f", stand-ins {[(sd.target, sd.mode) for sd in st.standins]}" if st.standins else "")
            )
        return 0
    with D.job(exp.train.device):
        datasets, num_classes, names = cache_datasets(exp, stages=args.stage)
        runs = run_recipe(exp, datasets, num_classes, only=args.stage, resume=args.resume, class_names=names)
        main = D.is_main()
    if main:
        for name, r in runs.items():
            print(
                f"{name:12s} test accuracy {100 * r.result['test']['accuracy']:6.2f}%  "
                f"{'(reused) ' if r.reused else ''}{r.dir}"
            )
    return 0
