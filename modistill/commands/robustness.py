"""`modistill robustness RUN_DIR`: the step-2 teacher under depth noise and void depth (paper Table 3)."""

from __future__ import annotations

import argparse

from ._common import fail, setup_logging


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by `modistill train` (steps 2 and 4 finished)")
    parser.add_argument(
        "--sigma2",
        type=float,
        nargs="+",
        default=None,
        help="noise variances (default: the paper's 0 1e-3 1e-2 1e-1 1 10)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--reading", choices=("std", "variance"), default="std",
                        help="each level v is the std of n ~ N(1, v) (default: the released code) or its "
                        "variance (the paper's column header sigma^2)")
    parser.add_argument("--no-clip", action="store_true",
                        help="do not saturate the noisy depth image to [0, 1] (the released code does)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    from modistill.pipeline.robustness import run_robustness
    from modistill.pipeline.session import check_cache_modalities, open_run
    from modistill.recipes.experiment import build_recipe

    run = open_run(args.run_dir)
    if "step2" not in {st.name for st in build_recipe(run.exp.recipe)}:
        return fail(
            f"{args.run_dir}: the robustness study (paper Table 3) perturbs the depth input of the step-2 "
            f"teacher of the garcia recipe; this run's recipe is {run.exp.recipe.name!r}, which has none"
        )
    check_cache_modalities(run.exp, ["step2"])  # an RGB-only cache: a clear error naming it
    res = run_robustness(args.run_dir, args.sigma2, seed=args.seed, reading=args.reading, clip=not args.no_clip)
    print(f"level v ({res['reading']}{', clipped' if res['clip'] else ''})   accuracy")
    for s, a in zip(res["sigma2"], res["accuracy"]):
        print(f"{s:<12g} {100 * a:6.2f}%")
    print(f"{'void':<12s} {100 * res['void']:6.2f}%")
    if res["rgb_final"] is not None:
        print(f"{'RGB final':<12s} {100 * res['rgb_final']:6.2f}%")
    return 0
