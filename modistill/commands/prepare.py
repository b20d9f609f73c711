"""`modistill prepare SRC OUT`: build the prepared cache (see docs/prepare.md and modistill.data.prepare).

``--flow [tvl1|dis|farneback]`` then adds optical flow for every cached sample (`modistill.data.prepare_flow`:
same frames and crop as the RGB, ``<OUT>/flow/<sample>.npy``, failures in ``flow_failures*.jsonl``).

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
    parser.add_argument(
        "--flow",
        nargs="?",
        const="tvl1",
        choices=("tvl1", "dis", "farneback"),
        default=None,
        help="also compute optical flow (given alone: tvl1; dis and farneback are much faster)",
    )
    parser.add_argument(
        "--flow-stack", type=int, default=1, metavar="L", help="flow fields stacked per frame (2L channels)"
    )
    parser.add_argument(
        "--flow-size", type=int, default=None, metavar="N", help="compute flow at N x N (default: --size)"
    )
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
        fres = None
        if args.flow:
            from modistill.data.prepare_flow import FlowOptions, prepare_flow

            fopts = FlowOptions(method=args.flow, stack=args.flow_stack, compute_size=args.flow_size)
            fres = prepare_flow(
                args.out,
                args.src,
                manifest=args.manifest,
                options=fopts,
                workers=args.workers,
                shard=shard,
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
    if fres is not None:
        from modistill.data.prepare_flow import flow_failures_path

        print(
            f"{args.out}{where}: flow ({args.flow}, L={args.flow_stack}) for {len(fres.done)} samples, "
            f"{len(fres.skipped)} already done, {len(fres.failures)} failed, in {fres.seconds:.1f} s"
        )
        if fres.failures:
            print(
                f"{len(fres.failures)} sample(s) have no flow; all are listed in "
                f"{flow_failures_path(args.out, shard)}:",
                file=sys.stderr,
            )
            for f in fres.failures[:10]:
                print(f"  {f['sample']} [{f['stage']}]: {f['error']}", file=sys.stderr)
        return max(res.exit_status, fres.exit_status)
    return res.exit_status
