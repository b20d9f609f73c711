"""`modistill export RUN_DIR --onnx [--out DIR] [--stage NAME] [--opset 17] [--dtype auto]`: export the
deployed RGB-only model to ONNX and check it against PyTorch with onnxruntime (see docs/deploy.md). The stage
defaults to the one the run's recipe deploys (step4, motion_final, hoffman_<loss>)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import fail


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by `modistill train`")
    parser.add_argument(
        "--onnx", action="store_true", help="export to ONNX (the only format, also the default)"
    )
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export-STAGE)")
    parser.add_argument(
        "--stage",
        default=None,
        help="stage to export (default: the stage the run's recipe deploys: step4, motion_final, ...)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: 17)")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="auto (the fastest dtype onnxruntime runs on CPU: fp32), fp32, or bf16 (refused: onnxruntime's "
        "CPU provider has no bf16 convolution) (default: auto)",
    )
    parser.add_argument(
        "--cache",
        default=None,
        help="the prepared cache the run trained on, if it moved (gives S and the crop)",
    )
    parser.add_argument(
        "--check-video",
        default=None,
        metavar="VIDEO",
        help="real clip for the check (default: the cache's first sample)",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        default=1e-4,
        help="allowed max |onnx - torch| relative to the largest |logit| (default: 1e-4)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from modistill.data.video import VideoReadError
    from modistill.deploy import MODEL_FILE, load_deployed, onnx_dtype, read_clip
    from modistill.deploy.onnx import check_onnx, export_onnx, reference_clip

    try:
        dtype = onnx_dtype(args.dtype)  # before loading: a refused dtype fails fast
        deployed = load_deployed(args.run_dir, args.stage, cache=args.cache, dtype=dtype)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        return fail(str(exc).strip('"'))
    out = Path(args.out) if args.out else Path(args.run_dir) / f"export-{deployed.spec.stage}"
    try:
        path = export_onnx(deployed, out, opset=args.opset, dtype=dtype)
    except ImportError as exc:
        return fail(f"{exc} (pip install 'modistill[export]')")
    K, S, N = deployed.frames, deployed.size, len(deployed.class_names)
    print(
        f"wrote {path} (stage {deployed.spec.stage}, {dtype}: input clips (batch, {K}, 3, {S}, {S}) -> logits "
        f"(batch, {N}); streams {'+'.join(deployed.streams)} on {deployed.spec.input}) and {out / 'deploy.json'}"
    )
    try:
        if args.check_video:
            clip, info = read_clip(args.check_video, deployed.spec)
            real, where = clip[None], f"{args.check_video} (frames {info['indices']}, crop {info['crop_px']})"
        else:
            real, where = reference_clip(deployed)
    except (FileNotFoundError, VideoReadError, ValueError) as exc:
        return fail(f"cannot read the real clip for the check: {exc}")
    gen = torch.Generator().manual_seed(0)
    clips = {"random clips": torch.randn(3, K, 3, S, S, generator=gen), "real clip": real}
    rows = check_onnx(deployed, path, clips, rtol=args.rtol)
    print(f"check against PyTorch with onnxruntime (real clip: {where}):")
    for r in rows:
        print(
            f"  {r['name']:13s} batch {r['batch']}: max |onnx - torch| = {r['max_abs_diff']:.3e} "
            f"(tolerance {r['tolerance']:.3e}), top-1 {'agrees' if r['top1_agree'] else 'DIFFERS'}: "
            f"{'ok' if r['ok'] else 'FAILED'}"
        )
    if not all(r["ok"] for r in rows):
        return fail(f"{out / MODEL_FILE}: the ONNX model does not match PyTorch within the tolerance", code=1)
    return 0
