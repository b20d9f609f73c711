"""`modistill eval RUN_DIR [--stage NAME] [--split test] [--clips N]`: evaluate a trained stage."""

from __future__ import annotations

import argparse

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
    from modistill.engine.evaluate import eval_kwargs, evaluate
    from modistill.pipeline.files import EvaluationFile
    from modistill.pipeline.runner import predictor
    from modistill.pipeline.session import cache_datasets, open_run

    handle = open_run(args.run_dir)
    exp = handle.exp
    if args.clips is not None:
        exp.data.clips_per_video = args.clips
    factory, num_classes, names = cache_datasets(exp)
    model = handle.model(args.stage)
    ev = handle.stages[args.stage].stage.evaluate
    res = evaluate(model, predictor(ev), factory(args.split, ev.inputs, False),
                   **eval_kwargs(exp.train, clips_per_video=exp.data.clips_per_video, num_classes=num_classes))
    print(
        f"{args.stage} on {args.split} ({ev.name}; {res.n} videos, {exp.data.clips_per_video} clip(s) each): "
        f"accuracy {100 * res.accuracy:.2f}%  mean class accuracy {100 * res.mean_class_accuracy:.2f}%"
    )
    labels = names or [str(i) for i in range(num_classes)]
    for name, a in zip(labels, res.per_class):
        print(f"  {name:28s} {'-' if a != a else f'{100 * a:6.2f}%'}")
    if args.out:
        EvaluationFile(args.stage, args.split, ev.name, res.to_dict()).write(args.out)
    return 0
