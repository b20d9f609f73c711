"""Per-video inference latency: the deployed RGB-only models against a two-stream RGB + TV-L1 flow model, and
the deployed forward pass against the machine's matmul FLOP/s.

    python benchmarks/inference_latency.py [--quick] [--videos A.avi ...] [--threads 1] [--dtypes fp32 auto]

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
(CPU time is robust to a busy machine when single-threaded). The three networks run in each dtype of
``--dtypes`` (``auto``: the deployment's choice, bf16 on a CPU with AVX-512 BF16 / AMX, else fp32; prepared as
the deployment prepares them, ``modistill.deploy.precision.prepare_module``). Videos: the real NTU fixture
S001C001P001R001A001_rgb.avi (1920x1080, 103 frames; MODISTILL_NTU_FIXTURES), the real UCF101 and Kinetics
clips of the shared fixtures (MODISTILL_REAL_FIXTURES, folder ``real``: 320x240 and 340x256), plus generated
320x240 videos of a moving texture; ratios are reported over the real videos and over all. Networks are
randomly initialised: latency does not depend on weights.

Forward efficiency (``deployed_forward.py``): the forward of ``rgb2`` (the deployed model) and ``rgb1`` on one
clip, in PyTorch and onnxruntime, fp32 and bf16, as achieved FLOP/s against the matmul FLOP/s of the same dtype
measured in the same run (an n x n matmul, and the model's own GEMM shapes).

Writes a Markdown table to stdout and JSON to ``benchmarks/results/inference_latency.json`` (full runs; a
``--quick`` smoke run writes JSON only where ``--out`` says).
"""

from __future__ import annotations

import argparse
import copy
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

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _p in (REPO, BENCH):  # run as a script from a checkout; the sibling deployed_forward.py
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import deployed_forward  # noqa: E402

from modistill.data.flow import flow_pair_starts, flow_to_tensor, prepare_flow_sample  # noqa: E402
from modistill.data.normalize import normalize_frames  # noqa: E402
from modistill.data.sampling import sample_indices  # noqa: E402
from modistill.data.video import read_video_frames, video_frame_count, write_video  # noqa: E402
from modistill.deploy import DeployedModel  # noqa: E402
from modistill.deploy.precision import BF16_CPU_FLAGS, cpu_flags, prepare_module, resolve_dtype  # noqa: E402
from modistill.models import MultiStreamNet, StreamSpec  # noqa: E402

FIXTURE = "S001C001P001R001A001_rgb.avi"
REAL_VIDEOS = ("video_ucf101/*/*.avi", "video_kinetics/*.mp4")  # under MODISTILL_REAL_FIXTURES
STAGES = ("decode", "preprocess", "flow", "model")
MODELS = ("rgb1", "rgb2", "flow2")
TARGET_FRACTION = 0.70  # of the deployed dtype's matmul peak (issue target)
TARGET_RATIO = 10.0  # flow2 / rgb2 on the real videos


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


def run_rgb(path: Path, net: DeployedModel, k: int, size: int, device: torch.device, clock: _Clock) -> None:
    """The RGB-only pipeline for one video (``net`` casts the float32 clip to its dtype)."""

    def decode() -> np.ndarray:
        n = video_frame_count(path)
        return read_video_frames(path, sample_indices(n, k, "even"))

    frames = clock.run("decode", decode)
    x = clock.run("preprocess", lambda: _rgb_tensor(frames, size).to(device))
    with torch.inference_mode():
        clock.run("model", net, x)


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
    dt = next(net.parameters()).dtype
    with torch.inference_mode():
        clock.run("model", lambda: net({"rgb": x.to(dt), "flow": fl.to(dt)}).logits.float())


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


def _build(backbone: str, width: float, k_classes: int, device: torch.device) -> dict[str, torch.nn.Module]:
    """float32 networks with default-layout weights: the RGB-only ones wrapped as deployed (one tensor in)."""
    rgb = StreamSpec(backbone=backbone, modality="rgb", width=width)
    flow = StreamSpec(backbone=backbone, modality="flow", width=width, in_channels=2)
    nets = {
        "rgb1": DeployedModel(MultiStreamNet({"rgb": rgb}, k_classes), ("rgb",)),
        "rgb2": DeployedModel(
            MultiStreamNet({"rgb": rgb, "hall": rgb}, k_classes, fusion="attention"), ("rgb", "hall")
        ),
        "flow2": MultiStreamNet({"rgb": rgb, "flow": flow}, k_classes, fusion="mean"),
    }
    return {n: m.to(device).eval() for n, m in nets.items()}


def _real_videos(ntu: Path, real: Path) -> list[Path]:
    """The NTU fixture and the real UCF101 / Kinetics clips that are present."""
    found = [ntu / FIXTURE] if (ntu / FIXTURE).is_file() else []
    for pattern in REAL_VIDEOS:
        found += sorted(real.glob(pattern))
    if not found:
        print(f"note: no real videos under {ntu} or {real}; timing generated videos only")
    return found


def _time_video(path: Path, nets: dict, args: argparse.Namespace, device, sync) -> dict:
    """Median per-stage wall and CPU seconds of each network's pipeline on one video."""
    out = {}
    for name, net in nets.items():
        samples = []
        for r in range(args.warmup + args.repeats):
            clock = _Clock(sync)
            if name == "flow2":
                run_two_stream_flow(path, net, args.frames, args.size, device, args.flow_method, clock)
            else:
                run_rgb(path, net, args.frames, args.size, device, clock)
            if r >= args.warmup:
                samples.append(clock)
        out[name] = {
            kind: {s: statistics.median(getattr(c, kind)[s] for c in samples) for s in STAGES}
            | {"total": statistics.median(sum(getattr(c, kind).values()) for c in samples)}
            for kind in ("wall", "cpu")
        }
    return out


def _summary(per_video: list[dict], dtype: str) -> dict:
    """Mean totals and ratios of ``dtype``'s timings, over the real videos and over all."""
    groups = {"real": [v for v in per_video if v["real"]], "all": per_video}
    out = {}
    for group, vids in groups.items():
        if not vids:
            continue
        out[group] = {}
        for kind in ("wall", "cpu"):

            def mean_of(name: str, stage: str, k: str = kind, vs: list = vids) -> float:
                return statistics.fmean(v[dtype][name][k][stage] for v in vs)

            t = {n: mean_of(n, "total") for n in MODELS}
            out[group][kind] = {
                "mean_total_s": t,
                "ratio_flow2_over_rgb2": t["flow2"] / t["rgb2"],
                # What the ratio would be if the deployed model took no time at all: only decoding and
                # preprocessing left in rgb2. A ratio target above it cannot be met by the model's speed.
                "ratio_bound_free_model": t["flow2"] / (t["rgb2"] - mean_of("rgb2", "model")),
                "ratio_flow2_over_rgb1": t["flow2"] / t["rgb1"],
                "flow_share_of_flow2": mean_of("flow2", "flow") / t["flow2"],
            }
    return out


def main(argv: list[str] | None = None) -> int:
    fixtures = Path(os.environ.get("MODISTILL_NTU_FIXTURES", REPO.parent / "shared" / "fixtures" / "ntu"))
    real = Path(os.environ.get("MODISTILL_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 generated video, tiny nets, 1 repeat")
    ap.add_argument("--videos", nargs="*", type=Path, default=[], help="extra (real) videos to time")
    ap.add_argument("--no-fixture", action="store_true", help="leave out the real fixture videos")
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
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "auto"], help="dtypes of the end-to-end runs")
    ap.add_argument("--forward-repeats", type=int, default=15, help="repeats of the forward-only timings")
    ap.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n peak matmul")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (freezing) forwards")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON path (full runs default to benchmarks/results)"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.generated, args.repeats, args.warmup, args.width = 1, 1, 0, min(args.width, 0.25)
        args.forward_repeats, args.matmul_size = 2, min(args.matmul_size, 512)
    out_path = args.out or (
        None if args.quick else REPO / "benchmarks" / "results" / "inference_latency.json"
    )

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    dtypes = list(dict.fromkeys(resolve_dtype(d, device) for d in args.dtypes))  # auto -> fp32 or bf16
    torch.manual_seed(0)
    base = _build(args.backbone, args.width, args.classes, device)
    nets = {d: {n: prepare_module(copy.deepcopy(m), d) for n, m in base.items()} for d in dtypes}

    forward = {}
    if device.type == "cpu":
        x = torch.randn(1, args.frames, 3, args.size, args.size)
        for name in ("rgb2", "rgb1"):
            forward[name] = deployed_forward.measure(
                base[name], x, threads=args.threads, repeats=args.forward_repeats,
                compile_too=args.compile, quick=args.quick, matmul_size=args.matmul_size,
            )  # fmt: skip
            print(deployed_forward.table(forward[name], name) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        videos = [(p, True) for p in args.videos]
        if not args.no_fixture:
            videos += [(p, True) for p in _real_videos(fixtures, real)]
        videos += [(p, False) for p in _generated_videos(Path(tmp), args.generated, frames=48)]
        per_video = []
        for path, is_real in videos:
            info = {"video": path.name, "real": is_real, "frames": video_frame_count(path)}
            h, w = read_video_frames(path, [0]).shape[1:3]
            info["resolution"] = f"{w}x{h}"
            for d in dtypes:
                info[d] = _time_video(path, nets[d], args, device, sync)
            per_video.append(info)

    summary = {d: _summary(per_video, d) for d in dtypes}
    deployed = resolve_dtype("auto", device)
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "videos"},
        "dtypes": dtypes,
        "deployed_dtype": deployed,
        "models": {n: {"params": sum(p.numel() for p in m.parameters())} for n, m in base.items()},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "opencv": cv2.__version__,
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_bf16_flags": sorted(cpu_flags() & BF16_CPU_FLAGS),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
        "forward": forward,
        "videos": per_video,
        "summary": summary,
        "targets": _targets(forward, summary, deployed),
    }
    print(_table(result))
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out_path}")
    return 0


def _targets(forward: dict, summary: dict, deployed: str) -> dict:
    """The deployed forward's fraction of its dtype's peaks, and the real-video latency ratio in that dtype."""
    out: dict = {"deployed_dtype": deployed, "target_fraction": TARGET_FRACTION, "target_ratio": TARGET_RATIO}
    rows = [r for r in forward.get("rgb2", {}).get("rows", []) if r["runtime"] == f"pytorch {deployed}"
            or r["runtime"] == f"pytorch {deployed} (deployed)"]  # fmt: skip
    if rows and rows[0]["fraction_of_square_peak"] is not None:  # None: an emulated dtype (no peak to meet)
        out["fraction_of_square_peak"] = rows[0]["fraction_of_square_peak"]
        out["fraction_of_shape_peak"] = rows[0]["fraction_of_shape_peak"]
        out["fraction_met_square"] = rows[0]["fraction_of_square_peak"] >= TARGET_FRACTION
        out["fraction_met_shapes"] = rows[0]["fraction_of_shape_peak"] >= TARGET_FRACTION
    real = summary.get(deployed, {}).get("real")
    if real:
        out["ratio_real_wall"] = real["wall"]["ratio_flow2_over_rgb2"]
        out["ratio_real_cpu"] = real["cpu"]["ratio_flow2_over_rgb2"]
        out["ratio_met"] = real["wall"]["ratio_flow2_over_rgb2"] >= TARGET_RATIO
        out["ratio_bound_free_model_real_wall"] = real["wall"]["ratio_bound_free_model"]
    return out


def _table(result: dict) -> str:
    lines = [
        "| video | dtype | model | decode | preprocess | flow | model | total (ms, wall) | total (ms, CPU) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in result["videos"]:
        for d in result["dtypes"]:
            for n in MODELS:
                w, c = v[d][n]["wall"], v[d][n]["cpu"]
                cells = " | ".join(f"{1e3 * w[s]:.1f}" for s in STAGES)
                lines.append(
                    f"| {v['video']} ({v['resolution']}) | {d} | {n} | {cells} | {1e3 * w['total']:.1f} | "
                    f"{1e3 * c['total']:.1f} |"
                )
    lines.append("")
    for d, groups in result["summary"].items():
        for group, s in groups.items():
            for kind in ("wall", "cpu"):
                lines.append(
                    f"{d}, {group} videos, {kind}: flow2 / rgb2 = {s[kind]['ratio_flow2_over_rgb2']:.2f}x, "
                    f"flow2 / rgb1 = {s[kind]['ratio_flow2_over_rgb1']:.2f}x, "
                    f"flow2 / rgb2 with a model taking no time = {s[kind]['ratio_bound_free_model']:.2f}x, "
                    f"flow share of flow2 = {100 * s[kind]['flow_share_of_flow2']:.0f}%"
                )
    t = result["targets"]
    if "fraction_of_square_peak" in t:
        lines.append(
            f"deployed rgb2 forward in {t['deployed_dtype']}: {100 * t['fraction_of_square_peak']:.0f}% of the "
            f"square-matmul peak, {100 * t['fraction_of_shape_peak']:.0f}% of the model-GEMM peak "
            f"(target >= {100 * t['target_fraction']:.0f}%)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
