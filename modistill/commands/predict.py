"""`modistill predict VIDEO [--run RUN_DIR | --model DIR/model.onnx] [--top-k 5] [--json]`: the top-k classes
of an RGB video with the deployed model (PyTorch from a run folder, onnxruntime from an export folder)."""

from __future__ import annotations

import argparse
import json

from ._common import fail


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="an RGB video file (any size; NTU's are 1920x1080)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", default=None, metavar="RUN_DIR", help="a run folder (PyTorch)")
    src.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="an export folder or its model.onnx, with deploy.json beside it (onnxruntime)",
    )
    parser.add_argument("--top-k", type=int, default=5, help="number of classes to list (default: 5)")
    parser.add_argument("--stage", default="step4", help="stage of --run to use (default: step4)")
    parser.add_argument(
        "--crop",
        default="auto",
        help="auto (median alignment of the video's setup/camera if known, else of all), "
        "median, full, or fractions x0,y0,x1,y1 (default: auto)",
    )
    parser.add_argument("--view", default=None, help="the camera group for the crop, e.g. S001C002")
    parser.add_argument("--cache", default=None, help="the run's prepared cache, if it moved (with --run)")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="auto (PyTorch: bf16 where the CPU has AVX-512 BF16 / AMX, else fp32; ONNX: fp32), fp32, or bf16 "
        "(PyTorch only) (default: auto)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modistill.data.video import VideoReadError
    from modistill.deploy import load_predictor, read_clip, top_k

    if args.top_k < 1:
        return fail(f"--top-k must be >= 1, got {args.top_k}")
    try:
        predictor = load_predictor(
            run=args.run, model=args.model, stage=args.stage, cache=args.cache, dtype=args.dtype
        )
    except (FileNotFoundError, KeyError, ValueError, ImportError) as exc:
        return fail(str(exc).strip('"'))
    spec = predictor.spec
    try:
        clip, info = read_clip(args.video, spec, crop=args.crop, view=args.view)
    except (FileNotFoundError, VideoReadError) as exc:
        return fail(str(exc))
    except ValueError as exc:
        return fail(f"{args.video}: {exc}")
    best = top_k(predictor.logits(clip[None])[0], spec.class_names, args.top_k)
    backend = "onnxruntime" if args.model else "pytorch"
    if args.json:
        print(
            json.dumps(
                info
                | {
                    "backend": backend,
                    "dtype": predictor.dtype,
                    "model": args.model or args.run,
                    "stage": spec.stage,
                    "top_k": best,
                },
                indent=1,
            )
        )
        return 0
    w, h = info["size"]
    print(
        f"{args.video}: {info['frames']} frames {w}x{h}; frames {info['indices']}, crop {info['crop_px']} "
        f"({info['crop']}); {backend} {predictor.dtype}"
    )
    for rank, r in enumerate(best, 1):
        print(f"  {rank}. {r['name']:32s} {100 * r['probability']:6.2f}%")
    return 0
