"""Decoding K evenly spaced frames of the real fixture videos: planned (modistill/data/decode_plan.py) against
sequential decoding up to the last requested frame (the reader before the plan).

    python benchmarks/decode_plan.py [--frames 5] [--repeats 5] [--out JSON]

Per video: codec, size, frames, keyframes, whether a plan applies (AVI with B-frames: no), packets sent to the
decoder and frames it output, and the median wall time of `read_video_frames` (planned) and of the sequential
reader, each as one call with PyAV's default threading (``thread_type="AUTO"``). The frames are checked to
be identical. Writes JSON (default ``benchmarks/results/decode_plan.json``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

import av  # noqa: E402

from modistill.data.decode_plan import DecodeStats, decode_planned, packet_table  # noqa: E402
from modistill.data.sampling import sample_indices  # noqa: E402
from modistill.data.video import _decode_sequential, read_video_frames, video_frame_count  # noqa: E402


def _videos() -> list[Path]:
    ntu = Path(os.environ.get("MODISTILL_NTU_FIXTURES", REPO.parent / "shared" / "fixtures" / "ntu"))
    real = Path(os.environ.get("MODISTILL_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))
    found = sorted(ntu.glob("*_rgb.avi")) + sorted((real / "video_kinetics").glob("*.mp4"))
    return found + sorted((real / "video_ucf101").rglob("*.avi"))


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def measure(path: Path, k: int, repeats: int) -> dict:
    n = video_frame_count(path)
    want = sample_indices(n, k, "even")
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        row = {
            "video": path.name,
            "codec": s.codec_context.name,
            "size": f"{s.width}x{s.height}",
            "frames": n,
        }
        table = packet_table(c, s)
    row["plan"] = table is not None
    if table is not None:
        row["keyframes"] = int(table.key.sum())
        stats = DecodeStats()
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            decode_planned(c, s, table, want, lambda f: f.to_ndarray(format="rgb24"), stats)
        row.update(sent=stats.sent, decoded=stats.output, span=stats.span)
    seq = lambda: _decode_sequential(path, want, lambda f: f.to_ndarray(format="rgb24"))  # noqa: E731
    if not np.array_equal(read_video_frames(path, want), seq()):
        raise SystemExit(f"{path}: planned and sequential frames differ")
    row["planned_ms"] = _median_ms(lambda: read_video_frames(path, want), repeats)
    row["sequential_ms"] = _median_ms(seq, repeats)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5, help="K evenly spaced frames (the deployed sampling)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "decode_plan.json")
    args = ap.parse_args(argv)
    rows = [measure(p, args.frames, args.repeats) for p in _videos()]
    if not rows:
        raise SystemExit("no fixture videos found (set MODISTILL_NTU_FIXTURES / MODISTILL_REAL_FIXTURES)")
    print(
        "| video | codec | size | frames | keyframes | plan | packets sent | frames decoded | planned (ms) | "
        "sequential (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['video']} | {r['codec']} | {r['size']} | {r['frames']} | {r.get('keyframes', '-')} | "
            f"{'yes' if r['plan'] else 'no (sequential)'} | {r.get('sent', '-')} | {r.get('decoded', '-')} | "
            f"{r['planned_ms']:.0f} | {r['sequential_ms']:.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"frames": args.frames, "repeats": args.repeats, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
