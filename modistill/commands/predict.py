"""`modistill predict VIDEO|FOLDER ... (--run RUN_DIR | --model DIR) [--out FILE.jsonl|.csv]`: the top-k classes of
RGB videos with the deployed model (PyTorch from a run folder, onnxruntime from an export folder).

The model is loaded once for all videos. A folder stands for the videos under it (recursively, by extension),
or, when it directly holds frame images and no videos, for one video made of those frames.
Each video gives one row: its top-k, the frames present and the frames its container declares, warnings (a
truncated file: fewer frames than declared), or the error that stopped it; a failed video does not stop the
others. Exit status: 0 every video predicted; 3 some failed (all others done, every failure in the rows and on
stderr); 2 nothing predicted (the model could not be loaded, bad arguments, or every video failed).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from ._common import fail, user_error_message

#: file name extensions taken as videos inside a folder (lower case)
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
#: a folder directly holding these (and no videos) is one video made of frames (lower case)
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
CSV_COLUMNS = ("video", "ok", "top1", "top1_probability", "top_k", "frames", "frames_declared", "warnings",
               "error")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO",
        help="RGB video files (any size), or folders: every video under a folder, recursively "
        f"({' '.join(VIDEO_EXTENSIONS)}); a folder of frame images alone is one video",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", default=None, metavar="RUN_DIR", help="a run folder (PyTorch)")
    src.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="an export folder or its model.onnx, with deploy.json beside it (onnxruntime)",
    )
    parser.add_argument("--top-k", type=int, default=5, help="number of classes to list (default: 5)")
    parser.add_argument(
        "--stage", default=None, help="stage of --run to use (default: the stage the run's recipe deploys)"
    )
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
    parser.add_argument("--json", action="store_true", help="print one JSON object per video (JSON Lines)")
    parser.add_argument(
        "--out", default=None, metavar="FILE", help="also write every row to FILE: .jsonl (JSON Lines) or .csv"
    )
    parser.set_defaults(func=run)


def expand_inputs(paths: list[str]) -> list[tuple[str, str | None]]:
    """``(video, error)`` per input: a file as given; a folder as the sorted videos under it (recursively), or
    itself when it directly holds frame images and no videos (a video made of frames), or one error row when it
    holds neither; a missing path as an error row."""
    out: list[tuple[str, str | None]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(
                str(f) for f in path.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
            )
            if not found and any(f.suffix.lower() in FRAME_EXTENSIONS for f in path.iterdir() if f.is_file()):
                out.append((p, None))
                continue
            if not found:
                out.append((p, f"{p}: is a directory with no video files ({' '.join(VIDEO_EXTENSIONS)}) in it "
                               "or its subfolders, and no frame images"))
            out.extend((f, None) for f in found)
        elif not path.exists():
            out.append((p, f"{p}: no such file"))
        else:
            out.append((p, None))
    return out


def _predict_one(predictor: Any, video: str, args: argparse.Namespace) -> dict[str, Any]:
    from modistill.deploy import read_clip, top_k

    clip, info = read_clip(video, predictor.spec, crop=args.crop, view=args.view)
    best = top_k(predictor.logits(clip[None])[0], predictor.spec.class_names, args.top_k)
    return {"ok": True, **info, "top_k": best, "error": None}


def _error_row(video: str, error: str) -> dict[str, Any]:
    return {"ok": False, "video": video, "frames": None, "frames_declared": None, "warnings": [], "top_k": [],
            "error": error}


def _csv_text(rows: list[dict[str, Any]]) -> str:
    fh = io.StringIO(newline="")
    w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        top = r.get("top_k") or []
        w.writerow({
            "video": r["video"],
            "ok": int(bool(r["ok"])),
            "top1": top[0]["name"] if top else "",
            "top1_probability": f"{top[0]['probability']:.6f}" if top else "",
            "top_k": ";".join(f"{t['name']}:{t['probability']:.6f}" for t in top),
            "frames": "" if r.get("frames") is None else r["frames"],
            "frames_declared": "" if r.get("frames_declared") is None else r["frames_declared"],
            "warnings": " | ".join(r.get("warnings") or []),
            "error": r.get("error") or "",
        })
    return fh.getvalue()


def _write_out(path: Path, rows: list[dict[str, Any]]) -> None:
    from modistill.core.atomic import write_text_atomic

    if path.suffix.lower() == ".csv":
        write_text_atomic(path, _csv_text(rows))
    else:
        write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _print_human(row: dict[str, Any], backend: str) -> None:
    w, h = row["size"]
    declared = f" (container declares {row['frames_declared']})" if row.get("frames_declared") else ""
    print(
        f"{row['video']}: {row['frames']} frames{declared} {w}x{h}; frames {row['indices']}, crop "
        f"{row['crop_px']} ({row['crop']}); {backend}"
    )
    for rank, r in enumerate(row["top_k"], 1):
        print(f"  {rank}. {r['name']:32s} {100 * r['probability']:6.2f}%")


def run(args: argparse.Namespace) -> int:
    from modistill.deploy import load_predictor

    if args.top_k < 1:
        return fail(f"--top-k must be >= 1, got {args.top_k}")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".jsonl", ".json", ".ndjson", ".csv"):
        return fail(f"--out {out}: the format follows the extension: .jsonl (JSON Lines) or .csv")
    try:
        predictor = load_predictor(
            run=args.run, model=args.model, stage=args.stage, cache=args.cache, dtype=args.dtype
        )
    except (FileNotFoundError, KeyError, ValueError, ImportError) as exc:
        return fail(str(exc).strip('"'))
    backend = "onnxruntime" if args.model else "pytorch"
    common = {"backend": backend, "dtype": predictor.dtype, "model": args.model or args.run,
              "stage": predictor.spec.stage}
    rows: list[dict[str, Any]] = []
    for video, error in expand_inputs(args.videos):
        if error is None:
            try:
                row = _predict_one(predictor, video, args)
            except Exception as exc:  # one bad video is recorded and the others go on; bugs keep their trace
                message = user_error_message(exc)
                if message is None and isinstance(exc, ValueError):
                    message = f"{video}: {exc}"  # e.g. a --view or --crop that does not fit this video
                if message is None:
                    raise
                row = _error_row(video, message)
        else:
            row = _error_row(video, error)
        row = {**row, **common}
        rows.append(row)
        for w in row["warnings"]:
            print(f"modistill: warning: {w}", file=sys.stderr)
        if not row["ok"]:
            fail(row["error"])
        elif args.json:
            print(json.dumps(row, sort_keys=True))
        else:
            _print_human(row, f"{backend} {predictor.dtype}")
    if out is not None:
        _write_out(out, rows)
    failed = sum(not r["ok"] for r in rows)
    if failed and len(rows) > 1:
        print(f"modistill: {failed} of {len(rows)} videos failed; the others were predicted"
              + (f" (all rows in {out})" if out else ""), file=sys.stderr)
    if failed == 0:
        return 0
    return 2 if failed == len(rows) else 3
