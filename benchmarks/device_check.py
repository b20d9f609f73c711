"""Device check in one short call: matmul peaks, training steps, loader, torchrun + resume, ONNX, torch.compile.

Made for a GPU that is lent for minutes at a time (docs/benchmarks.md, "Device check"): every section writes
its results as soon as it ends (JSON + Markdown under --out), a failing section records its error and the
next one runs, and sections that would not fit in the time left (--budget) are skipped and say so.

    PYTHONPATH=. timeout 540 python3 benchmarks/device_check.py --device cuda --out $OUT    # < 8 min on one GPU
    PYTHONPATH=. python3 benchmarks/device_check.py --device cpu --quick --out /tmp/dc       # ~1 min, in tests

Sections (the GPU sizes; --quick shrinks every model and image to seconds on a CPU):
1. environment: torch, CUDA, cuDNN, the device, TF32 settings, whether PyAV is importable (not needed).
2. matmul: the measured dense-matmul peak in fp32 (strict: no TF32), TF32 and bf16.
3. model: one training step (forward + backward, cross-entropy) of the paper's model, two-stream ResNet-50 at
   224 px on 5-frame clips, and of a ResNet-18 one, in fp32 and bf16 autocast, channels_last, each against a
   plain 2D ResNet of the same depth on the same frames; peak memory (torch.cuda.max_memory_allocated).
   Rows come from benchmarks/model_throughput.py (same code). cuDNN autotuning on (train.deterministic=false);
   one row repeats the ResNet-50 two-stream bf16 step with the engine's deterministic default for its cost.
4. loader: a prepared cache at 224 px written straight from generated arrays (no PyAV, no video), read by
   CachedClipDataset(output="uint8") with N workers, pinned memory, non-blocking copies and normalisation on
   the device (what the engine does), in clips/s against what the fastest two-stream ResNet-50 step consumes;
   the host-normalised float path at the largest N for comparison; device vs host normalisation difference.
5. onnx: the deployed RGB-only model (step 4: rgb + hall streams), exported to ONNX, onnxruntime (CUDA
   provider when installed, else CPU) against PyTorch on the device (fp32, TF32 off).
6. torchrun: `python -m torch.distributed.run --nproc_per_node 1` (nccl on CUDA, gloo on CPU) of the garcia
   recipe's step1_rgb on a tiny cache, killed after epoch 1, resumed, and compared with an uninterrupted run;
   a DDP step on the same process group counts "Grad strides do not match bucket view strides" warnings.
7. compile: torch.compile twins of the model rows, most important first, as long as the budget lasts.

Targets (measured in the same run): two-stream step >= 90 % of the throughput of two plain ResNet steps on
the same frames; bf16 >= 2x fp32 (GPU only); loader with 16 workers >= 1.5x what training consumes (GPU only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):  # run as a script from the working tree, no install
    if p not in sys.path:
        sys.path.insert(0, p)

import device_check_sections as S  # noqa: E402  (the sections: benchmarks/device_check_sections.py)
from _torchrun import torchrun as launch_torchrun  # noqa: E402  (benchmarks/_torchrun.py)

TARGETS = {"two_stream_vs_two_plain": 0.90, "bf16_vs_fp32": 2.0, "loader_vs_training": 1.5}


class Report:
    """Collects section results and rewrites ``device_check.json`` / ``device_check.md`` after each one, so a
    run killed by its time limit still leaves everything it measured."""

    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.out, self.t0 = out, time.perf_counter()
        self.budget = args.budget
        self.data: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "sections": {}, "targets": {}}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def run(self, name: str, fn, *, need_s: float = 0.0) -> dict | None:
        """Run section ``fn() -> dict``; record ok / error (with the traceback's tail) / skipped."""
        if self.left() < need_s:
            self.data["sections"][name] = {
                "status": "skipped",
                "why": f"{self.left():.0f} s left, needs ~{need_s:.0f}",
            }
            self.write()
            print(f"[{name}] skipped: not enough time left", flush=True)
            return None
        print(f"[{name}] ...", flush=True)
        t0 = time.perf_counter()
        entry: dict = {"status": "running"}
        self.data["sections"][name] = entry
        try:
            entry["data"] = fn(entry)  # the section may fill entry["data"] as it goes (partial results)
            entry["status"] = "ok"
        except Exception as exc:  # one section failing must not cost the others
            entry["status"] = "error"
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()[-3000:]
            print(f"[{name}] ERROR {entry['error']}", flush=True)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        self.write()
        print(f"[{name}] {entry['status']} in {entry['seconds']} s", flush=True)
        return entry.get("data")

    def write(self) -> None:
        self.data["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        self.data["targets"] = S.targets(self.data["sections"], TARGETS)
        for name, text in (
            ("device_check.json", json.dumps(self.data, indent=2, default=str) + "\n"),
            ("device_check.md", S.markdown(self.data, TARGETS)),
        ):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.out / name)


def torchrun(
    phase: str, exp_file: Path, row: Path, device: str, timeout: float
) -> subprocess.CompletedProcess:
    """Launch this script as a 1-process torchrun job running one phase of the torchrun section."""
    args = [__file__, "--phase", phase, "--exp", str(exp_file), "--row", str(row), "--device", device]
    return launch_torchrun(args, nproc=1, threads=1, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: the same code paths in about a minute")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "device_check")
    ap.add_argument(
        "--budget", type=float, default=None, help="seconds for all sections (default 450; 120 quick)"
    )
    ap.add_argument("--batch", type=int, default=None, help="clips per training step (default 8; 2 quick)")
    ap.add_argument(
        "--workers", default=None, help="loader worker counts, e.g. 0,4,8,16 (default; 0,2 quick)"
    )
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # torchrun worker phases
    ap.add_argument("--exp", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--row", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        S.torchrun_phase(args.phase, args.exp, args.row, args.device)
        return 0
    args.budget = args.budget or (120.0 if args.quick else 450.0)
    import torch

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available on this machine (use --device cpu)", file=sys.stderr)
        return 2
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the speed setting (train.deterministic=false)
    sizes = S.Sizes.for_run(args.quick, dev, args.batch, args.workers)
    rep = Report(args.out, args)
    skip = set(filter(None, args.skip.split(",")))
    ctx = {"dev": dev, "sizes": sizes, "report": rep, "torchrun": torchrun}
    work = Path(tempfile.mkdtemp(prefix="modistill_device_check_"))
    ctx["work"] = work
    sections = [
        ("environment", S.environment, 0),
        ("matmul", S.matmul, 5),
        ("model", S.model, 20),
        ("loader", S.loader, 20),
        ("onnx", S.onnx_section, 20),
        ("torchrun", S.torchrun_section, 30),  # after ONNX: a hanging process group costs only what follows
        ("compile", S.compile_section, 30),
    ]
    try:
        for name, fn, need in sections:
            if name in skip:
                rep.data["sections"][name] = {"status": "skipped", "why": "--skip"}
                continue
            rep.run(name, lambda entry, fn=fn: fn(ctx, entry), need_s=need)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        rep.write()
    print()
    print(S.markdown(rep.data, TARGETS))
    print(f"wrote {args.out / 'device_check.json'} and {args.out / 'device_check.md'}")
    bad = [n for n, s in rep.data["sections"].items() if s["status"] == "error"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
