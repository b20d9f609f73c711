"""`modistill eval RUN_DIR [--stage NAME] [--split test] [--clips N]`: evaluate a trained stage (default: the
stage the run's recipe deploys) and print its accuracy per class, by the cache's class names."""

from __future__ import annotations

import argparse

from ._common import fail, setup_logging


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by `modistill train`")
    parser.add_argument(
        "--stage",
        default=None,
        help="stage to evaluate (default: the stage the run's recipe deploys: step4, motion_final, ...)",
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
    stage = handle.stage(args.stage)
    ev = stage.stage.evaluate
    factory, num_classes, names = cache_datasets(exp, stages=[stage.stage.name])
    data = factory(args.split, ev.inputs, False)
    if len(data) == 0:
        return fail(f"{exp.data.cache}: the {args.split} split of protocol {exp.data.protocol!r} is empty")
    model = handle.model(stage.stage.name)
    res = evaluate(model, predictor(ev), data,
                   **eval_kwargs(exp.train, clips_per_video=exp.data.clips_per_video, num_classes=num_classes))
    print(
        f"{stage.stage.name} on {args.split} ({ev.name}; {res.n} videos, {exp.data.clips_per_video} clip(s) "
        f"each): accuracy {100 * res.accuracy:.2f}%  mean class accuracy {100 * res.mean_class_accuracy:.2f}%"
    )
    labels = names or handle.class_names or [str(i) for i in range(num_classes)]
    for name, a in zip(labels, res.per_class):
        print(f"  {name:28s} {'-' if a != a else f'{100 * a:6.2f}%'}")
    if args.out:
        d = res.to_dict() | {"class_names": list(labels)}
        EvaluationFile(stage.stage.name, args.split, ev.name, d).write(args.out)
    return 0
