"""Per-video inference latency: the deployed RGB-only models against a two-stream RGB + TV-L1 flow model.

    python benchmarks/inference_latency.py [--quick] [--videos A.avi ...] [--threads 1] [--device cpu]

What is timed, per video and end to end (REF §6: the point of motion distillation is to drop test-time flow):

- ``rgb1``: one RGB stream (MARS-style distilled student): count frames, decode the K sampled frames,
  centre-crop + resize to S, normalise, forward.
- ``rgb2``: the deployed two-stream RGB-only model (appearance stream + motion-mimicking "hall" stream, both
  reading RGB, attention fusion): same pipeline, a second network.
- ``flow2``: a classic two-stream model (RGB stream + flow stream, late fusion of logits): it must also decode
  frame i+1 of every sampled frame i and compute flow for those K pairs (TV-L1 by default, at S x S, the
  ``modistill.data.flow.prepare_flow_sample`` path) before its forward.

Stages: ``decode`` (frame count + PyAV decoding), ``preprocess`` (crop/resize/normalise RGB), ``flow``
(grayscale, TV-L1, quantisation, tensor), ``model`` (forward, ``torch.inference_mode``). Each video is run
``--repeats`` times after ``--warmup`` runs; medians are reported, as wall time and as process CPU time
(CPU time is robust to a busy machine when single-threaded). Videos: the real NTU fixture
S001C001P001R001A001_rgb.avi (1920x1080, 103 frames; located via MODISTILL_NTU_FIXTURES) plus generated
320x240 videos of a moving texture. Networks are randomly initialised: latency does not depend on weights.

Writes a Markdown table to stdout and JSON to ``benchmarks/results/inference_latency.json`` (full runs; a
``--quick`` smoke run writes JSON only where ``--out`` says).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from modistill.data.flow import flow_pair_starts, flow_to_tensor, prepare_flow_sample
from modistill.data.normalize import normalize_frames
from modistill.data.sampling import sample_indices
from modistill.data.video import read_video_frames, video_frame_count, write_video
from modistill.models import MultiStreamNet, StreamSpec

REPO = Path(__file__).resolve().parent.parent
FIXTURE = "S001C001P001R001A001_rgb.avi"
STAGES = ("decode", "preprocess", "flow", "model")


def _center_crop(frames: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) -> (n, s, s, 3), s = min(H, W): the largest centred square."""
    h, w = frames.shape[1:3]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return frames[:, y : y + s, x : x + s]


def _rgb_tensor(frames: np.ndarray, size: int) -> torch.Tensor:
    """(K, H, W, 3) uint8 -> (1, K, 3, S, S) float, ImageNet-normalised."""
    crops = _center_crop(frames)
    small = np.stack(
        [cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=cv2.INTER_AREA) for f in crops]
    )
    return normalize_frames(small).unsqueeze(0).contiguous()


class _Clock:
    """Accumulates wall and CPU seconds per stage."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.wall: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.cpu: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.sync = sync

    def run(self, stage: str, fn: Callable, *a, **kw):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn(*a, **kw)
        if stage == "model":
            self.sync()
        self.wall[stage] += time.perf_counter() - w0
        self.cpu[stage] += time.process_time() - c0
        return out


def run_rgb(path: Path, net: MultiStreamNet, k: int, size: int, device: torch.device, clock: _Clock) -> None:
    """The RGB-only pipeline for one video."""

    def decode() -> np.ndarray:
        n = video_frame_count(path)
        return read_video_frames(path, sample_indices(n, k, "even"))

    frames = clock.run("decode", decode)
    x = clock.run("preprocess", lambda: _rgb_tensor(frames, size).to(device))
    with torch.inference_mode():
        clock.run("model", net, {"rgb": x})


def run_two_stream_flow(
    path: Path, net: MultiStreamNet, k: int, size: int, device: torch.device, method: str, clock: _Clock
) -> None:
    """RGB + flow two-stream pipeline for one video: flow of pairs (i, i+1) at the K sampled frames."""

    def decode() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = video_frame_count(path)
        idx = sample_indices(n, k, "even")
        starts = flow_pair_starts(idx, n, 1)[:, 0]  # i, or n-2 for the last frame (end clamp)
        union = np.unique(np.concatenate([idx, starts, starts + 1]))
        return read_video_frames(path, union), union, idx, starts

    frames, union, idx, starts = clock.run("decode", decode)
    pos = {int(f): p for p, f in enumerate(union)}
    x = clock.run("preprocess", lambda: _rgb_tensor(frames[[pos[int(i)] for i in idx]], size).to(device))

    def flow() -> torch.Tensor:
        # In the decoded subset pair (s, s+1) sits at (pos[s], pos[s] + 1): both frames are in `union`.
        q = prepare_flow_sample(frames, [pos[int(s)] for s in starts], size, method, 1, crop_fn=_center_crop)
        return flow_to_tensor(q).unsqueeze(0).to(device)

    fl = clock.run("flow", flow)
    with torch.inference_mode():
        clock.run("model", net, {"rgb": x, "flow": fl})


def _generated_videos(folder: Path, count: int, frames: int) -> list[Path]:
    """320x240 mpeg4 videos of a blurred random texture drifting by a few px per frame."""
    out = []
    for v in range(count):
        rng = np.random.default_rng(v)
        canvas = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3)).astype(np.float32), (0, 0), 2.0)
        canvas = cv2.normalize(canvas, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        dx, dy = rng.integers(-3, 4, size=2)
        clip = [
            canvas[120 + t * dy % 100 : 360 + t * dy % 100, 160 + t * dx % 100 : 480 + t * dx % 100]
            for t in range(frames)
        ]
        path = folder / f"generated_{v}.avi"
        write_video(path, np.stack(clip), fps=25)
        out.append(path)
    return out


def _build(backbone: str, width: float, k_classes: int, device: torch.device) -> dict[str, MultiStreamNet]:
    rgb = StreamSpec(backbone=backbone, modality="rgb", width=width)
    flow = StreamSpec(backbone=backbone, modality="flow", width=width, in_channels=2)
    nets = {
        "rgb1": MultiStreamNet({"rgb": rgb}, k_classes),
        "rgb2": MultiStreamNet({"rgb": rgb, "hall": rgb}, k_classes, fusion="attention"),
        "flow2": MultiStreamNet({"rgb": rgb, "flow": flow}, k_classes, fusion="mean"),
    }
    return {n: m.to(device).eval() for n, m in nets.items()}


def main(argv: list[str] | None = None) -> int:
    fixtures = Path(os.environ.get("MODISTILL_NTU_FIXTURES", REPO.parent / "shared" / "fixtures" / "ntu"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 generated video, tiny nets, 1 repeat")
    ap.add_argument("--videos", nargs="*", type=Path, default=[], help="extra videos to time")
    ap.add_argument("--no-fixture", action="store_true", help=f"leave out the NTU fixture {FIXTURE}")
    ap.add_argument("--generated", type=int, default=3, help="generated 320x240 videos")
    ap.add_argument("--frames", type=int, default=5, help="K sampled frames per video (REF §3)")
    ap.add_argument("--size", type=int, default=112, help="network input side S")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--classes", type=int, default=60)
    ap.add_argument("--flow-method", default="tvl1", choices=("tvl1", "dis", "farneback"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (REF §6 quotes 1 core)")
    ap.add_argument("--device", default="cpu", help="model device (flow is always CPU OpenCV)")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON path (full runs default to benchmarks/results)"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.generated, args.repeats, args.warmup, args.width = 1, 1, 0, min(args.width, 0.25)
    out_path = args.out or (
        None if args.quick else REPO / "benchmarks" / "results" / "inference_latency.json"
    )

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    nets = _build(args.backbone, args.width, args.classes, device)

    with tempfile.TemporaryDirectory() as tmp:
        videos = list(args.videos)
        if not args.no_fixture:
            if (fixtures / FIXTURE).is_file():
                videos.insert(0, fixtures / FIXTURE)
            else:
                print(f"note: NTU fixture not found at {fixtures / FIXTURE}; timing generated videos only")
        videos += _generated_videos(Path(tmp), args.generated, frames=48)
        per_video = []
        for path in videos:
            info = {"video": path.name, "frames": video_frame_count(path)}
            h, w = read_video_frames(path, [0]).shape[1:3]
            info["resolution"] = f"{w}x{h}"
            for name, net in nets.items():
                samples = []
                for r in range(args.warmup + args.repeats):
                    clock = _Clock(sync)
                    if name == "flow2":
                        run_two_stream_flow(
                            path, net, args.frames, args.size, device, args.flow_method, clock
                        )
                    else:
                        run_rgb(path, net, args.frames, args.size, device, clock)
                    if r >= args.warmup:
                        samples.append(clock)
                info[name] = {
                    kind: {s: statistics.median(getattr(c, kind)[s] for c in samples) for s in STAGES}
                    | {"total": statistics.median(sum(getattr(c, kind).values()) for c in samples)}
                    for kind in ("wall", "cpu")
                }
            per_video.append(info)

    def mean_of(name: str, kind: str, stage: str) -> float:
        return statistics.fmean(v[name][kind][stage] for v in per_video)

    summary = {}
    for kind in ("wall", "cpu"):
        t = {n: mean_of(n, kind, "total") for n in nets}
        summary[kind] = {
            "mean_total_s": t,
            "ratio_flow2_over_rgb2": t["flow2"] / t["rgb2"],
            "ratio_flow2_over_rgb1": t["flow2"] / t["rgb1"],
            "flow_share_of_flow2": mean_of("flow2", kind, "flow") / t["flow2"],
        }
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "videos"},
        "models": {n: {"params": sum(p.numel() for p in m.parameters())} for n, m in nets.items()},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "opencv": cv2.__version__,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
        "videos": per_video,
        "summary": summary,
    }
    print(_table(result))
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out_path}")
    return 0


def _table(result: dict) -> str:
    lines = [
        "| video | model | decode | preprocess | flow | model | total (ms, wall) | total (ms, CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in result["videos"]:
        for n in ("rgb1", "rgb2", "flow2"):
            w, c = v[n]["wall"], v[n]["cpu"]
            cells = " | ".join(f"{1e3 * w[s]:.1f}" for s in STAGES)
            lines.append(
                f"| {v['video']} ({v['resolution']}) | {n} | {cells} | {1e3 * w['total']:.1f} | "
                f"{1e3 * c['total']:.1f} |"
            )
    s = result["summary"]
    lines.append("")
    for kind in ("wall", "cpu"):
        lines.append(
            f"{kind}: flow2 / rgb2 = {s[kind]['ratio_flow2_over_rgb2']:.2f}x, "
            f"flow2 / rgb1 = {s[kind]['ratio_flow2_over_rgb1']:.2f}x, "
            f"flow share of flow2 = {100 * s[kind]['flow_share_of_flow2']:.0f}%"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
