"""`modistill eval RUN_DIR [--stage NAME] [--split test] [--clips N]`: evaluate a trained stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import setup_logging


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by `modistill train`")
    parser.add_argument(
        "--stage", default="step4", help="stage to evaluate (default: step4, the deployed model)"
    )
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument(
        "--clips", type=int, default=None, help="clips per video (default: the run's setting)"
    )
    parser.add_argument("--out", default=None, help="write the metrics (JSON) here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from modistill.engine.evaluate import evaluate
    from modistill.recipes.runner import predictor
    from modistill.recipes.session import cache_datasets, open_run

    handle = open_run(args.run_dir)
    exp = handle.exp
    if args.clips is not None:
        exp.data.clips_per_video = args.clips
    factory, num_classes, names = cache_datasets(exp)
    model = handle.model(args.stage)
    ev = handle.stages[args.stage].stage.evaluate
    res = evaluate(
        model,
        predictor(ev),
        factory(args.split, ev.inputs, False),
        batch_size=exp.train.eval_batch_size or exp.train.batch_size,
        device=exp.train.device,
        num_classes=num_classes,
        clips_per_video=exp.data.clips_per_video,
        amp=exp.train.amp,
    )
    print(
        f"{args.stage} on {args.split} ({ev.name}; {res.n} videos, {exp.data.clips_per_video} clip(s) each): "
        f"accuracy {100 * res.accuracy:.2f}%  mean class accuracy {100 * res.mean_class_accuracy:.2f}%"
    )
    labels = names or [str(i) for i in range(num_classes)]
    for name, a in zip(labels, res.per_class):
        print(f"  {name:28s} {'-' if a != a else f'{100 * a:6.2f}%'}")
    if args.out:
        d = res.to_dict() | {"stage": args.stage, "split": args.split, "evaluation": ev.name}
        Path(args.out).write_text(json.dumps(d, indent=1))
    return 0
