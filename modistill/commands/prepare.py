"""`modistill prepare SRC OUT`: build the prepared cache (see docs/prepare.md and modistill.data.prepare).

Exit status: 0 when every sample is in the cache, 3 when some samples failed (listed in the failures file,
the rest is done), 2 when the job could not start (bad arguments, unreadable source or manifest, an existing
cache prepared with other settings), 130 when interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import argparse
import os
import sys


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", nargs="?", metavar="SRC", help="NTU-layout root (nturgb+d_rgb/, nturgb+d_depth_masked/, ...)"
    )
    parser.add_argument("out", metavar="OUT", help="cache folder to create or resume")
    parser.add_argument(
        "--manifest", metavar="FILE", help="CSV/JSONL manifest of your own data instead of SRC"
    )
    parser.add_argument("--size", type=int, default=112, help="side S of the square crops (default 112)")
    parser.add_argument(
        "--frames", type=int, default=16, help="frame budget F: evenly spaced source frames kept (default 16)"
    )
    parser.add_argument("--depth-encoding", choices=("jet", "raw"), default="jet", help="(default jet)")
    parser.add_argument("--near-mm", type=float, default=None, help="depth mapped to the near end (500)")
    parser.add_argument("--far-mm", type=float, default=None, help="depth mapped to the far end (4500)")
    parser.add_argument(
        "--alignment",
        choices=("skeleton", "registered"),
        default="skeleton",
        help="skeleton: fit RGB-depth from the joints (NTU); registered: depth already matches the RGB view",
    )
    parser.add_argument(
        "--keep-aspect",
        action="store_true",
        help="crop a centred square instead of squashing the intersection",
    )
    parser.add_argument(
        "--workers", type=int, default=_default_workers(), help="worker processes (default: CPUs, at most 8)"
    )
    parser.add_argument("--shard", metavar="i/n", help="process sorted(samples)[i::n] only (0 <= i < n)")
    parser.add_argument(
        "--missing-list",
        metavar="FILE",
        help="official missing-skeleton list (default: NTU_RGBD*_samples_with_missing_skeletons.txt in SRC)",
    )
    parser.add_argument(
        "--fallback-samples",
        type=int,
        default=0,
        metavar="N",
        help="fit at most N skeletons per (setup, camera) for the fallback alignment table (0 = all)",
    )
    parser.add_argument("--limit", type=int, default=None, help="prepare only the first N samples (trials)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modistill.data import cache as C
    from modistill.data.depth import KINECT_FAR_MM, KINECT_NEAR_MM
    from modistill.data.prepare import PrepareError, PrepareOptions, prepare_cache

    if (args.src is None) == (args.manifest is None):
        print("error: give exactly one of SRC (an NTU-layout root) and --manifest FILE", file=sys.stderr)
        return 2
    try:
        shard = C.parse_shard(args.shard) if args.shard else None
        opts = PrepareOptions(
            size=args.size,
            frames=args.frames,
            depth_encoding=args.depth_encoding,
            near_mm=KINECT_NEAR_MM if args.near_mm is None else args.near_mm,
            far_mm=KINECT_FAR_MM if args.far_mm is None else args.far_mm,
            alignment=args.alignment,
            keep_aspect=args.keep_aspect,
        )
        res = prepare_cache(
            args.out,
            args.src,
            manifest=args.manifest,
            options=opts,
            workers=args.workers,
            shard=shard,
            missing_list=args.missing_list,
            fallback_per_group=args.fallback_samples,
            progress=not args.quiet,
            limit=args.limit,
        )
    except (PrepareError, C.CacheError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished samples are kept; run the same command again to resume", file=sys.stderr
        )
        return 130
    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    print(
        f"{args.out}{where}: {len(res.done)} prepared ({len(res.fallback)} with the fallback alignment), "
        f"{len(res.skipped)} already done, {len(res.failures)} failed, of {res.total} in {res.seconds:.1f} s"
    )
    if res.failures:
        path = C.failures_path(args.out, shard)
        print(f"{len(res.failures)} sample(s) failed; all are listed in {path}:", file=sys.stderr)
        for f in res.failures[:10]:
            print(f"  {f['sample']} [{f['stage']}]: {f['error']}", file=sys.stderr)
        if len(res.failures) > 10:
            print(f"  ... and {len(res.failures) - 10} more", file=sys.stderr)
    return res.exit_status
