"""`modistill prepare SRC OUT`: build the prepared cache (see docs/prepare.md and modistill.data.prepare).

Sources: an NTU-layout root (SRC), a UCF101/HMDB51 class-folder tree (SRC with ``--layout ucf101|hmdb51
--split N``) or a manifest of your own data (``--manifest FILE``, optional ``--classes FILE``).
``--modalities`` chooses what is built (default: as the data has them); ``flow`` (or ``--flow
[tvl1|dis|farneback]``) then adds optical flow for every cached sample (`modistill.data.prepare_flow`: same
frames and crop as the RGB, ``<OUT>/flow/<sample>.npy``, failures in ``flow_failures*.jsonl``).

Exit status: 0 when every sample is in the cache, 3 when some samples failed (listed in the failures file,
the rest is done), 2 when the job could not start (bad arguments, unreadable source or manifest, an existing
cache prepared with other settings), 130 when interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import argparse
import os
import sys

from modistill.commands._common import fail


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src",
        nargs="?",
        metavar="SRC",
        help="NTU-layout root (nturgb+d_rgb/, ...) or, with --layout, a UCF101/HMDB51 class-folder root",
    )
    parser.add_argument("out", metavar="OUT", help="cache folder to create or resume")
    _source_args(parser.add_argument_group("source"))
    _content_args(parser.add_argument_group("what is built"), parser.add_argument_group("depth"))
    _flow_args(parser.add_argument_group("optical flow"))
    _job_args(parser.add_argument_group("job"))
    parser.set_defaults(func=run)


def _source_args(src: argparse._ArgumentGroup) -> None:
    src.add_argument("--manifest", metavar="FILE", help="CSV/JSONL manifest of your own data instead of SRC")
    src.add_argument(
        "--classes", metavar="FILE", help="class names of a manifest, one per line (line k = label k)"
    )
    src.add_argument(
        "--layout", choices=("ucf101", "hmdb51"), help="SRC is a UCF101 or HMDB51 tree with official splits"
    )
    src.add_argument("--split", type=int, choices=(1, 2, 3), help="official split N of --layout")
    src.add_argument(
        "--split-dir",
        metavar="DIR",
        help="folder of the split files (default SRC/ucfTrainTestlist or SRC/testTrainMulti_7030_splits)",
    )
    src.add_argument(
        "--missing-list",
        metavar="FILE",
        help="official missing-skeleton list (default: NTU_RGBD*_samples_with_missing_skeletons.txt in SRC)",
    )


def _content_args(what: argparse._ArgumentGroup, depth: argparse._ArgumentGroup) -> None:
    what.add_argument(
        "--modalities",
        metavar="LIST",
        help="comma-separated: rgb, rgb,depth, rgb,flow or rgb,depth,flow (default: rgb plus depth when the "
        "source has depth; flow only when asked)",
    )
    what.add_argument("--size", type=int, default=112, help="side S of the square crops (default 112)")
    what.add_argument(
        "--frames", type=int, default=16, help="frame budget F: evenly spaced source frames kept (default 16)"
    )
    what.add_argument(
        "--alignment",
        choices=("skeleton", "registered"),
        default="skeleton",
        help="skeleton: fit RGB-depth from the joints (NTU); registered: depth already matches the RGB view",
    )
    what.add_argument(
        "--keep-aspect",
        action="store_true",
        help="crop a centred square instead of squashing the intersection",
    )
    depth.add_argument(
        "--depth-scale",
        default="mm",
        metavar="UNITS",
        help="stored depth units per metre, or a preset: mm (= kinect, ntu, redwood; 1000), tum (5000), "
        "sunrgbd (bit-rotated mm); nyu-raw is refused (disparity). Default mm",
    )
    depth.add_argument(
        "--depth-check",
        choices=("fail", "warn", "off"),
        default="fail",
        help="depth that is clearly not metric in these units: a failure (default), a warning, or unchecked",
    )
    depth.add_argument("--depth-encoding", choices=("jet", "raw"), default="jet", help="(default jet)")
    depth.add_argument("--near-mm", type=float, default=None, help="depth mapped to the near end (500)")
    depth.add_argument("--far-mm", type=float, default=None, help="depth mapped to the far end (4500)")


def _flow_args(flow: argparse._ArgumentGroup) -> None:
    flow.add_argument(
        "--flow",
        nargs="?",
        const="tvl1",
        choices=("tvl1", "dis", "farneback"),
        default=None,
        help="also compute optical flow (given alone: tvl1; dis and farneback are much faster)",
    )
    flow.add_argument(
        "--flow-stack",
        type=int,
        default=None,
        metavar="L",
        help="flow fields stacked per frame (2L channels, L=1)",
    )
    flow.add_argument(
        "--flow-size", type=int, default=None, metavar="N", help="compute flow at N x N (default: --size)"
    )
    flow.add_argument(
        "--flow-bound", type=float, default=None, metavar="PX", help="flow quantisation clip in pixels (20)"
    )


def _job_args(job: argparse._ArgumentGroup) -> None:
    job.add_argument(
        "--workers", type=int, default=_default_workers(), help="worker processes (default: CPUs, at most 8)"
    )
    job.add_argument("--shard", metavar="i/n", help="process sorted(samples)[i::n] only (0 <= i < n)")
    job.add_argument(
        "--fallback-samples",
        type=int,
        default=0,
        metavar="N",
        help="fit at most N skeletons per (setup, camera) for the fallback alignment table (0 = all)",
    )
    job.add_argument("--limit", type=int, default=None, help="prepare only the first N samples (trials)")
    job.add_argument(
        "--restart",
        action="store_true",
        help="first delete what an earlier prepare wrote into OUT (to start over with other settings)",
    )
    job.add_argument("--quiet", action="store_true", help="no progress bar")


def _modalities(args: argparse.Namespace) -> tuple[tuple[str, ...] | None, str | None]:
    """(modalities for the RGB/depth pass or None = as the data has them, flow method or None)."""
    method = args.flow
    if args.modalities is not None and "flow" in args.modalities.split(","):
        method = method or "tvl1"
    given = [f"--flow-{k}" for k in ("stack", "size", "bound") if getattr(args, f"flow_{k}") is not None]
    if given and not method:
        raise ValueError(f"{', '.join(given)} set(s) the flow pass: add --flow (or flow to --modalities)")
    if args.modalities is None:
        return None, method
    mods = [m.strip() for m in args.modalities.split(",") if m.strip()]
    bad = [m for m in mods if m not in ("rgb", "depth", "flow")]
    if bad or "rgb" not in mods or len(set(mods)) != len(mods):
        raise ValueError(
            f"--modalities {args.modalities!r}: use rgb, rgb,depth, rgb,flow or rgb,depth,flow (rgb is always "
            "built: flow is computed from it and the deployed model reads it)"
        )
    if "flow" in mods:
        method = method or "tvl1"
    elif method:
        raise ValueError(
            f"--flow with --modalities {args.modalities!r}: add flow to --modalities, or drop --flow"
        )
    return tuple(m for m in ("rgb", "depth") if m in mods), method


def _print_records(title: str, path: object, rows: list, fmt) -> None:  # noqa: ANN001
    print(f"{len(rows)} {title}; all are listed in {path}:", file=sys.stderr)
    for r in rows[:10]:
        print(f"  {fmt(r)}", file=sys.stderr)
    if len(rows) > 10:
        print(f"  ... and {len(rows) - 10} more", file=sys.stderr)


def _options(args: argparse.Namespace, modalities: tuple[str, ...] | None):  # noqa: ANN202 - lazy import
    from modistill.data.depth import KINECT_FAR_MM, KINECT_NEAR_MM
    from modistill.data.depth_units import parse_depth_units
    from modistill.data.prepare import PrepareOptions

    return PrepareOptions(
        size=args.size,
        frames=args.frames,
        depth_encoding=args.depth_encoding,
        near_mm=KINECT_NEAR_MM if args.near_mm is None else args.near_mm,
        far_mm=KINECT_FAR_MM if args.far_mm is None else args.far_mm,
        modalities=modalities,
        alignment=args.alignment,
        keep_aspect=args.keep_aspect,
        depth_units=parse_depth_units(args.depth_scale),
        depth_check=args.depth_check,
    )


def _flow_options(args: argparse.Namespace, method: str):  # noqa: ANN202 - lazy import
    from modistill.data.flow import FLOW_BOUND
    from modistill.data.prepare_flow import FlowOptions

    return FlowOptions(
        method=method,
        stack=1 if args.flow_stack is None else args.flow_stack,
        compute_size=args.flow_size,
        bound=FLOW_BOUND if args.flow_bound is None else args.flow_bound,
    )


def run(args: argparse.Namespace) -> int:
    from modistill.data import cache as C
    from modistill.data.prepare import PrepareError, prepare_cache

    if (args.src is None) == (args.manifest is None):
        return fail(
            "give exactly one of SRC (an NTU-layout root, or a UCF101/HMDB51 root with --layout) "
            "and --manifest FILE"
        )
    if args.layout is not None and args.split is None:
        return fail(f"--layout {args.layout} needs --split 1, 2 or 3 (the official split to prepare)")
    try:
        mods, method = _modalities(args)
        shard = C.parse_shard(args.shard) if args.shard else None
        fopts = _flow_options(args, method) if method else None  # checked before the long RGB pass
        res = prepare_cache(
            args.out,
            args.src,
            manifest=args.manifest,
            options=_options(args, mods),
            workers=args.workers,
            shard=shard,
            missing_list=args.missing_list,
            fallback_per_group=args.fallback_samples,
            progress=not args.quiet,
            limit=args.limit,
            layout=args.layout,
            split=args.split,
            split_dir=args.split_dir,
            classes=args.classes,
            restart=args.restart,
        )
        for note in res.notes:
            print(f"note: {note}", file=sys.stderr)
        fres = None
        if fopts is not None:
            from modistill.data.prepare_flow import prepare_flow  # imports torch (flow.py): only when asked

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
        return fail(str(exc))
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished samples are kept; run the same command again to resume", file=sys.stderr
        )
        return 130
    return _report(args, shard, res, fopts, fres)


def _report(args: argparse.Namespace, shard, res, fopts, fres) -> int:  # noqa: ANN001 - lazy-imported types
    from modistill.data import cache as C

    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    print(
        f"{args.out}{where}: {len(res.done)} prepared ({len(res.fallback)} with the fallback alignment), "
        f"{len(res.skipped)} already done, {len(res.failures)} failed, of {res.total} in {res.seconds:.1f} s "
        f"[{', '.join(res.modalities)}]"
    )
    fail_line = lambda f: f"{f['sample']} [{f['stage']}]: {f['error']}"  # noqa: E731
    if res.failures:
        _print_records("sample(s) failed", C.failures_path(args.out, shard), res.failures, fail_line)
    if res.warnings:
        _print_records(
            "warning(s) about prepared samples",
            C.warnings_path(args.out, shard),
            res.warnings,
            lambda w: f"{w['sample']}: {w['warning']}",
        )
    if fres is None:
        return res.exit_status
    print(
        f"{args.out}{where}: flow ({fopts.method}, L={fopts.stack}, bound {fopts.bound:g} px) for "
        f"{len(fres.done)} samples, {len(fres.skipped)} already done, {len(fres.failures)} failed, "
        f"in {fres.seconds:.1f} s"
    )
    if fres.failures:
        from modistill.data.prepare_flow import flow_failures_path

        _print_records(
            "sample(s) have no flow", flow_failures_path(args.out, shard), fres.failures, fail_line
        )
    return max(res.exit_status, fres.exit_status)
