"""`modistill synth OUT`: generate the synthetic NTU-format RGB-D action dataset (docs/synthetic.md)."""

from __future__ import annotations

import argparse
import sys
import time


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x180, got {text!r}") from None
    return w, h


def _int_list(text: str) -> list[int]:
    try:
        out: list[int] = []
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-"))
                out.extend(range(lo, hi + 1))
            elif part.strip():
                out.append(int(part))
        return out
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,2,5-8, got {text!r}") from None


def _range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frame range LO-HI, e.g. 40-80, got {text!r}") from None
    return lo, hi


def _subject_reps(text: str) -> tuple[list[int], int]:
    subjects, sep, n = text.rpartition("=")
    try:
        if not sep:
            raise ValueError
        return _int_list(subjects), int(n)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"expected SUBJECTS=N, e.g. 1,3,6-7=4, got {text!r}"
        ) from None


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", nargs="?", help="output root (NTU layout is written under it)")
    parser.add_argument(
        "--preset",
        default="demo",
        choices=["tiny", "small", "demo"],
        help="dataset size: tiny (12 samples), small (144), demo (288; default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument(
        "--rgb-size",
        type=_size,
        default=(320, 180),
        metavar="WxH",
        help="RGB video size, even numbers (default 320x180; NTU is 1920x1080)",
    )
    parser.add_argument(
        "--depth-size",
        type=_size,
        default=(128, 106),
        metavar="WxH",
        help="depth PNG size (default 128x106; NTU is 512x424)",
    )
    parser.add_argument(
        "--classes", default=None, help="comma-separated class names or 1-based indices (see --list-classes)"
    )
    parser.add_argument("--subjects", type=_int_list, default=None, help="subject ids, e.g. 1-8")
    parser.add_argument("--cameras", type=_int_list, default=None, help="camera ids among 1,2,3")
    parser.add_argument("--setups", type=int, default=None, help="number of setups")
    parser.add_argument("--replications", type=int, default=None, help="replications per setup")
    parser.add_argument(
        "--subject-replications",
        type=_subject_reps,
        action="append",
        default=None,
        metavar="SUBJECTS=N",
        help="replications of these subjects instead of --replications (repeatable), e.g. 1,3,6-7=4",
    )
    parser.add_argument("--frames", type=_range, default=None, metavar="LO-HI", help="sample length range")
    parser.add_argument(
        "--missing-skeleton-rate",
        type=float,
        default=None,
        help="fraction of samples whose skeleton file has 0 bodies",
    )
    parser.add_argument(
        "--noise-body-rate",
        type=float,
        default=None,
        help="fraction of samples with a spurious extra skeleton body",
    )
    parser.add_argument(
        "--codec",
        choices=["mpeg4", "libx264"],
        default=None,
        help="video encoder: mpeg4 (default; same bytes in every run) or libx264 (as NTU)",
    )
    parser.add_argument(
        "--quality",
        type=int,
        default=None,
        help="mpeg4 quantiser 2-31 (default 4) or libx264 crf 0-51 (default 20); lower = better",
    )
    parser.add_argument("--list-classes", action="store_true", help="print the class table and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modistill.data.synth import ACTIONS, generate_dataset
    from modistill.data.synth.config import DEMO_CLASSES

    if args.list_classes:  # "*": in the demo preset
        for i, a in enumerate(ACTIONS, 1):
            pair = f" (pair: {a.pair})" if a.pair else ""
            star = "*" if a.name in DEMO_CLASSES else " "
            print(f"{i:2d}{star}{a.name:<20} {a.kind:<15} {a.description}{pair}")
        return 0
    if not args.out:
        print("modistill synth: the output folder OUT is required", file=sys.stderr)
        return 2
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    overrides = {
        "subjects": args.subjects,
        "cameras": args.cameras,
        "setups": args.setups,
        "replications": args.replications,
        "subject_replications": (
            {p: n for subjects, n in args.subject_replications for p in subjects}
            if args.subject_replications
            else None
        ),
        "frames": args.frames,
        "missing_skeleton_rate": args.missing_skeleton_rate,
        "noise_body_rate": args.noise_body_rate,
        "codec": args.codec,
        "quality": args.quality,
    }
    t0 = time.perf_counter()
    try:
        names = generate_dataset(
            args.out,
            preset=args.preset,
            seed=args.seed,
            workers=args.workers,
            rgb_size=args.rgb_size,
            depth_size=args.depth_size,
            classes=classes,
            progress=not args.no_progress,
            **{k: v for k, v in overrides.items() if v is not None},
        )
    except ValueError as e:
        print(f"modistill synth: {e}", file=sys.stderr)
        return 2
    print(f"{len(names)} samples in {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0
