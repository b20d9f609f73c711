"""Training-step throughput of the modistill models: frames/s, peak memory, achieved FLOP/s vs matmul peak.

For each configuration (backbone, width, resolution, frames, 1/2/3 streams with connections or a plain 2D
ResNet on the same frames, fp32 or bf16 autocast) one forward + backward step (cross-entropy on the fused
logits; no optimizer step) is timed. FLOPs per step are counted with
``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and backward) and divided by
the measured step time; the result is reported as a fraction of the machine's own dense-matmul rate measured
in the same run (a 2048 x 2048 matmul in fp32 and in bf16), so the numbers mean "how much of what this machine
can do".

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` after a reset (exact peak of tensors). On CPU, torch's
allocations are invisible to tracemalloc, so the increase of the process's peak RSS (``ru_maxrss``) across the
configuration is reported: a lower bound (0 when an earlier configuration already reached a higher peak); run
one configuration per process (``--only``) for exact CPU peaks.

Usage::

    python benchmarks/model_throughput.py --quick                 # smoke test, tiny models, a few seconds
    python benchmarks/model_throughput.py                         # the full set (minutes on 2 CPU cores)
    python benchmarks/model_throughput.py --device cuda --out benchmarks/results/model_throughput.json
    python benchmarks/model_throughput.py --compile --only "resnet18 w1 112px T5 B2 2-stream" \
        --out benchmarks/results/model_throughput_compile.json --md /tmp/compile.md    # torch.compile vs eager

Targets reported against (2 CPU cores, ResNet-18 two-stream training step at 112 x 112): >= 80% of the fp32
matmul FLOP/s, and bf16 autocast >= 1.6x the fp32 frames/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from modistill.models import Connection, MultiStreamNet, StreamSpec, create_model  # noqa: E402

TARGET_FP32_FRACTION = 0.80
TARGET_BF16_SPEEDUP = 1.6


@dataclass(frozen=True)
class Config:
    """One benchmark point; ``streams`` = 0 is the plain 2D ResNet on the same B*T frames (the baseline)."""

    backbone: str = "resnet18"
    width: float = 1.0
    size: int = 112
    frames: int = 5
    batch: int = 2
    streams: int = 2
    dtype: str = "fp32"  # "fp32" | "bf16" (autocast)
    channels_last: bool = True
    compile: bool = False  # torch.compile (inductor) the model; the first call's compile time is reported

    @property
    def label(self) -> str:
        kind = "plain2d" if self.streams == 0 else f"{self.streams}-stream"
        return (
            f"{self.backbone} w{self.width:g} {self.size}px T{self.frames} B{self.batch} {kind} {self.dtype}"
            + ("" if self.channels_last else " nchw")
            + (" compiled" if self.compile else "")
        )


def build(cfg: Config, num_classes: int = 60) -> torch.nn.Module:
    """The model of a configuration: plain 2D ResNet, or 1/2/3 streams with the recipe's connections.

    2 streams: rgb + depth, depth -> rgb (paper step 2). 3 streams: rgb + depth + hall with depth -> hall and
    hall -> rgb (a chain through the hallucination stream, the heaviest connection pattern of the recipe).
    """
    if cfg.streams == 0:
        return create_model(cfg.backbone, num_classes=num_classes, width=cfg.width)
    names = {1: ["rgb"], 2: ["rgb", "depth"], 3: ["rgb", "depth", "hall"]}[cfg.streams]
    specs = {n: StreamSpec(cfg.backbone, "depth" if n == "depth" else "rgb", cfg.width) for n in names}
    conns = {
        1: [],
        2: [Connection("depth", "rgb")],
        3: [Connection("depth", "hall"), Connection("hall", "rgb")],
    }
    return MultiStreamNet(specs, num_classes, conns[cfg.streams], channels_last=cfg.channels_last)


def make_inputs(cfg: Config, device: torch.device) -> tuple[object, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 60, (cfg.batch * (cfg.frames if cfg.streams == 0 else 1),), generator=g)
    if cfg.streams == 0:
        x = torch.randn(cfg.batch * cfg.frames, 3, cfg.size, cfg.size, generator=g)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(device), labels.to(device)
    clips = torch.randn(cfg.batch, cfg.frames, 3, cfg.size, cfg.size, generator=g)
    return {"rgb": clips.to(device), "depth": clips.clone().to(device)}, labels.to(device)


def _step(
    model: torch.nn.Module, inputs: object, labels: torch.Tensor, cfg: Config, device: torch.device
) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16"):
        out = model(inputs)
        logits = out if isinstance(out, torch.Tensor) else out.logits
    F.cross_entropy(logits.float(), labels).backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 2048, min_time: float = 0.5) -> float:
    """Measured dense-matmul FLOP/s (2 n^3 per product) of an n x n matmul in ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        _sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time and reps >= 3:
            return 2 * n**3 * reps / elapsed


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def run_config(
    cfg: Config, device: torch.device, warmup: int = 2, iters: int = 5, compile_backend: str = "inductor"
) -> dict[str, object]:
    """Time ``iters`` training steps (after ``warmup``) of one configuration; return its result row.

    ``compile_backend`` is torch.compile's backend for ``cfg.compile`` rows ("inductor": the real thing;
    "aot_eager": the same tracing without code generation, for smoke tests)."""
    rss0 = _maxrss_bytes()
    torch.manual_seed(0)
    model = build(cfg).to(device)
    if cfg.channels_last:
        # Parameters in channels_last too, as the training engine stores them (engine.utils
        # match_memory_format): mismatched weight layouts cost a reorder per call, and DDP warns about them.
        model = model.to(memory_format=torch.channels_last)
    model.train()
    inputs, labels = make_inputs(cfg, device)
    with FlopCounterMode(display=False) as counter:  # counted on the eager model (dynamo hides the ops)
        _step(model, inputs, labels, cfg, device)
    flops = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    if cfg.compile:
        torch._dynamo.reset()  # fresh caches: the recompile limit counts per code object, across models
    run = torch.compile(model, backend=compile_backend) if cfg.compile else model
    compile_s = None
    for i in range(max(warmup, 1 if cfg.compile else 0)):
        t0 = time.perf_counter()
        _step(run, inputs, labels, cfg, device)
        _sync(device)
        if i == 0 and cfg.compile:
            compile_s = time.perf_counter() - t0  # the first call compiles forward and backward
        model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        _step(run, inputs, labels, cfg, device)
        _sync(device)
        times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    step = sorted(times)[len(times) // 2]  # median: robust to a noisy shared machine
    frames = cfg.batch * cfg.frames
    if device.type == "cuda":
        peak, mem_kind = torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    else:
        peak, mem_kind = max(0, _maxrss_bytes() - rss0), "cpu_maxrss_increase"
    return {
        **asdict(cfg),
        "label": cfg.label,
        "step_s": step,
        "frames_per_s": frames / step,  # clip frames (B*T) per second
        "stream_frames_per_s": frames * max(1, cfg.streams) / step,  # frames through all streams
        "flops_per_step": flops,
        "achieved_flops": flops / step,
        "peak_mem_bytes": peak,
        "mem_kind": mem_kind,
        "compile_s": compile_s,
        "compile_backend": compile_backend if cfg.compile else None,
    }


def default_configs(quick: bool, compile_: bool = False) -> list[Config]:
    """The benchmark set; `compile_` adds torch.compile twins of the ResNet-18 plain / two-stream rows."""
    if quick:
        base = Config(backbone="resnet18", width=0.125, size=32, frames=2, batch=1)
        out = [Config(**{**asdict(base), "streams": s, "dtype": d}) for s in (0, 2) for d in ("fp32", "bf16")]
        return out + ([Config(**{**asdict(base), "compile": True})] if compile_ else [])
    out = []
    for backbone in ("resnet18", "resnet50"):
        for s in (0, 1, 2, 3):
            for d in ("fp32", "bf16"):
                out.append(Config(backbone=backbone, streams=s, dtype=d))
    out.append(Config(backbone="resnet18", streams=2, dtype="fp32", channels_last=False))
    out.append(Config(backbone="resnet18", width=0.5, streams=2, dtype="fp32"))
    if compile_:
        out += [
            Config(backbone="resnet18", streams=s, dtype=d, compile=True)
            for s in (0, 2)
            for d in ("fp32", "bf16")
        ]
    return out


def summarise(rows: list[dict], peaks: dict[str, float]) -> dict[str, object]:
    """Fractions of the matmul peak per row, and the two target checks."""
    for r in rows:
        r["fraction_of_fp32_matmul"] = r["achieved_flops"] / peaks["fp32"]
        r["fraction_of_own_dtype_matmul"] = r["achieved_flops"] / peaks[r["dtype"]]
    key = {
        "backbone": "resnet18",
        "width": 1.0,
        "size": 112,
        "streams": 2,
        "channels_last": True,
        "compile": False,
    }

    def find(dtype: str) -> dict | None:
        for r in rows:
            if r["dtype"] == dtype and all(r[k] == v for k, v in key.items()):
                return r
        return None

    fp32, bf16 = find("fp32"), find("bf16")
    targets: dict[str, object] = {"config": key}
    if fp32:
        targets["fp32_fraction"] = fp32["fraction_of_fp32_matmul"]
        targets["fp32_fraction_target"] = TARGET_FP32_FRACTION
        targets["fp32_fraction_met"] = fp32["fraction_of_fp32_matmul"] >= TARGET_FP32_FRACTION
    if fp32 and bf16:
        targets["bf16_speedup"] = bf16["frames_per_s"] / fp32["frames_per_s"]
        targets["bf16_speedup_target"] = TARGET_BF16_SPEEDUP
        targets["bf16_speedup_met"] = targets["bf16_speedup"] >= TARGET_BF16_SPEEDUP
    # Overhead of the stream machinery: 1-stream video net vs plain 2D ResNet on the same frames.
    for r in rows:
        if r["streams"] == 1:
            for p in rows:
                if p["streams"] == 0 and all(
                    p[k] == r[k] for k in ("backbone", "width", "size", "frames", "dtype", "compile")
                ):
                    r["vs_plain2d_frames_per_s"] = r["frames_per_s"] / p["frames_per_s"]
    # torch.compile: each compiled row against its eager twin.
    for r in rows:
        if r.get("compile"):
            for e in rows:
                if not e.get("compile") and all(e[k] == r[k] for k in asdict(Config()) if k != "compile"):
                    r["compile_speedup"] = r["frames_per_s"] / e["frames_per_s"]
    return targets


def markdown(result: dict) -> str:
    m = result["machine"]
    n, peaks = result["matmul_size"], result["matmul_flops"]
    lines = [
        "# Model throughput (training step: forward + backward)",
        "",
        f"Generated by `benchmarks/model_throughput.py{' --quick' if result['quick'] else ''}` "
        f"on {m['device_name']} ({m['threads']} threads), torch {m['torch']}."
        + (" **Quick smoke run: tiny models, not the full benchmark.**" if result["quick"] else ""),
        "",
        f"Matmul peak measured in the same run ({n}x{n}): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
        f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s. Memory: {m['mem_note']}.",
        "",
        "| config | step (ms) | frames/s | GFLOP/step | GFLOP/s | of fp32 peak | of own-dtype peak "
        "| peak mem (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['label']} | {r['step_s'] * 1e3:.1f} | {r['frames_per_s']:.1f} "
            f"| {r['flops_per_step'] / 1e9:.2f} "
            f"| {r['achieved_flops'] / 1e9:.1f} | {r['fraction_of_fp32_matmul']:.0%} "
            f"| {r['fraction_of_own_dtype_matmul']:.0%} | {r['peak_mem_bytes'] / 2**20:.0f} |"
        )
    t = result["targets"]
    lines += ["", "Targets (ResNet-18 two-stream, 112x112, fp32 vs bf16 autocast):", ""]
    if "fp32_fraction" in t:
        lines.append(
            f"- fp32 achieved / fp32 matmul peak: {t['fp32_fraction']:.0%} (target >= "
            f"{TARGET_FP32_FRACTION:.0%}: {'met' if t['fp32_fraction_met'] else 'NOT met'})"
        )
    if "bf16_speedup" in t:
        lines.append(
            f"- bf16 / fp32 frames/s: {t['bf16_speedup']:.2f}x (target >= {TARGET_BF16_SPEEDUP}x: "
            f"{'met' if t['bf16_speedup_met'] else 'NOT met'})"
        )
    if not ("fp32_fraction" in t or "bf16_speedup" in t):
        lines.append("- not measured in this run (the target configuration is not in the set)")
    compiled = [r for r in result["results"] if r.get("compile")]
    if compiled:
        lines += [
            "",
            "torch.compile (inductor, default mode) against the same configuration in eager mode:",
            "",
        ]
        for r in compiled:
            vs = (
                f"{r['compile_speedup']:.2f}x eager"
                if "compile_speedup" in r
                else "no eager twin in this run"
            )
            lines.append(f"- {r['label']}: {vs}; first call (compilation) {r['compile_s']:.1f} s")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny configurations for a smoke test")
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "model_throughput.json")
    ap.add_argument("--md", type=Path, default=REPO / "docs" / "benchmarks_model.md", help="Markdown table")
    ap.add_argument("--iters", type=int, default=None, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    ap.add_argument("--only", default=None, help="substring filter on configuration labels")
    ap.add_argument("--matmul-size", type=int, default=None, help="n of the n x n peak matmul (default 2048)")
    ap.add_argument("--compile", action="store_true", help="add torch.compile twins of the ResNet-18 rows")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    iters = args.iters or (2 if args.quick else 5)
    configs = [c for c in default_configs(args.quick, args.compile) if not args.only or args.only in c.label]
    if not configs:
        print(f"no configuration matches --only {args.only!r}", file=sys.stderr)
        return 2
    n = args.matmul_size or 2048
    peaks = {
        "fp32": matmul_flops(device, torch.float32, n=n, min_time=0.2 if args.quick else 1.0),
        "bf16": matmul_flops(device, torch.bfloat16, n=n, min_time=0.2 if args.quick else 1.0),
    }
    print(f"matmul {n}^2: fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    rows = []
    for cfg in configs:
        row = run_config(cfg, device, warmup=args.warmup, iters=iters)
        rows.append(row)
        print(
            f"{cfg.label:<48} {row['step_s'] * 1e3:9.1f} ms  {row['frames_per_s']:8.1f} frames/s  "
            f"{row['achieved_flops'] / peaks['fp32']:6.1%} of fp32 peak",
            flush=True,
        )
    targets = summarise(rows, peaks)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    result = {
        "quick": args.quick,
        "machine": {
            "device": str(device),
            "device_name": dev_name,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "mem_note": "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "increase of process peak RSS (ru_maxrss) per configuration, a lower bound",
        },
        "matmul_flops": peaks,
        "matmul_size": n,
        "results": rows,
        "targets": targets,
    }
    md = markdown(result)
    print()
    print(md)
    for path, text in ((args.out, json.dumps(result, indent=2) + "\n"), (args.md, md)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    print(f"wrote {args.out} and {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
