"""Data throughput: `modistill prepare` samples/s (1 and 2 workers) and CachedClipDataset loader clips/s
(DataLoader with 0, 1, 2 workers, batch 8), compared with what a training step consumes; and the host cost of
one training batch at 224 px with the items normalised on the host (float32) or left uint8 for the device.

    python benchmarks/data_throughput.py --quick          # smoke test: "tiny" synthetic set, seconds
    python benchmarks/data_throughput.py                  # "small" synthetic set (144 samples), minutes
    python benchmarks/data_throughput.py --src DIR        # an existing NTU-layout root instead
    python benchmarks/data_throughput.py --host-cost-only # the 224 px host cost per batch alone (seconds)

Host cost per batch (`host_cost`): what a loader worker does for one batch of 8 clips x 5 frames at 224 px
(read the frames from the cache's memory maps, flip, build the items, collate), timed on one thread as in a
DataLoader worker, for `output="float"` (normalised on the host, the old path) and `output="uint8"` (the
engine normalises on the device); plus the bytes a batch moves to the device and, for uint8, the time of the
normalisation itself on this CPU (on a GPU it runs there). Its cache is written from random arrays
(benchmarks/synthetic_cache.py): the cost does not depend on the pixels.

The synthetic data (modistill.data.synth) is generated in a temporary folder. Its RGB is 320x180 (160x90 with
--quick), far smaller than NTU's 1920x1080, whose decoding dominates preparing real NTU; so when the NTU
fixtures are present (MODISTILL_NTU_FIXTURES) the script also times decoding F evenly spaced frames of the
real 1080p fixture video and projects a per-sample cost for NTU. Training consumption comes from
benchmarks/results/model_throughput.json (frames/s of a training step / T frames per clip = clips/s) when it
exists, else "n/a". Rates are wall-clock on whatever else the machine is doing: compare within one run.
Results: benchmarks/results/data_throughput.json, and the block between the markers in docs/prepare.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

# torch is imported inside the functions that need it: prepare's workers are spawned and re-import this
# script, which would otherwise cost each of them a torch import.
from modistill.data.prepare import PrepareOptions, prepare_cache  # noqa: E402

MD_BEGIN, MD_END = "<!-- data_throughput:begin -->", "<!-- data_throughput:end -->"
HOST_BEGIN, HOST_END = "<!-- host_cost:begin -->", "<!-- host_cost:end -->"
NTU60_SAMPLES = 56_880


def bench_prepare(src: Path, work: Path, opts: PrepareOptions, workers: int) -> dict:
    out = work / f"cache_w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = prepare_cache(out, src, options=opts, workers=workers)
    dt = time.perf_counter() - t0
    if res.failures:
        raise RuntimeError(f"prepare failed on {len(res.failures)} samples: {res.failures[:3]}")
    n = len(res.done)
    return {"workers": workers, "samples": n, "seconds": dt, "samples_per_s": n / dt, "cache": str(out)}


def bench_loader(
    cache: Path, workers: int, batch: int, batches: int, frames: int, output: str = "uint8"
) -> dict:
    """Steady-state clips/s: one long epoch (sampling with replacement) so worker start-up is paid once,
    and the first batch (which pays it) is not timed. ``output="uint8"`` (what the pipeline uses) includes the
    dataset's `device_transform` in the main process, as the engine applies it (here the device is the CPU)."""
    import torch

    from modistill.data.dataset import CachedClipDataset

    ds = CachedClipDataset(cache, None, frames=frames, train=True, output=output)
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=batch * (batches + 1))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers)
    n_clips, t0 = 0, None
    for b in loader:
        if t0 is None:
            t0 = time.perf_counter()
            continue
        if ds.device_transform is not None:
            b = ds.device_transform(b)
        n_clips += b["rgb"].shape[0]
    dt = time.perf_counter() - t0
    return {
        "workers": workers,
        "batch": batch,
        "output": output,
        "clips": n_clips,
        "seconds": dt,
        "clips_per_s": n_clips / dt,
    }


def bench_ntu_decode(frames: int, size: int) -> dict | None:
    """Decode ``frames`` evenly spaced frames of the real 1080p NTU fixture video and crop-resize them."""
    import numpy as np

    from modistill.data.align import Alignment, crop_aligned
    from modistill.data.sampling import sample_indices
    from modistill.data.video import read_video_frames, video_frame_count

    fx = Path(os.environ.get("MODISTILL_NTU_FIXTURES", REPO.parent / "shared" / "fixtures" / "ntu"))
    video = fx / "S001C001P001R001A001_rgb.avi"
    if not video.is_file():
        return None
    n = video_frame_count(video)
    idx = sample_indices(n, frames, "even")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        rgb = read_video_frames(video, idx)
        depth = np.ones((frames, 424, 512), np.uint16)  # no NTU depth is public: a stand-in for the crop
        crop_aligned(rgb, depth, Alignment(scale=2.9, tx=230.0, ty=-50.0), size)
        times.append(time.perf_counter() - t0)
    t = sorted(times)[1]
    return {
        "video": video.name,
        "frames_decoded_upto": int(idx.max()) + 1,
        "seconds_per_sample": t,
        "ntu60_core_hours": NTU60_SAMPLES * t / 3600,
    }


def training_rates(frames: int) -> list[dict] | None:
    path = REPO / "benchmarks" / "results" / "model_throughput.json"
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())["results"]
        return [
            {
                "label": r["label"],
                "device": r.get("device", ""),
                "frames_per_s": r["frames_per_s"],
                "clips_per_s": r["frames_per_s"] / r.get("frames", frames),
            }
            for r in rows
        ]
    except (ValueError, KeyError, TypeError):
        return None


def bench_host_cost(work: Path, size: int = 224, batch: int = 8, frames: int = 5, reps: int = 15) -> dict:
    """Median host time to build one collated training batch, float vs uint8 items (see the docstring)."""
    import torch
    from synthetic_cache import write_cache
    from torch.utils.data import default_collate

    from modistill.data.dataset import CachedClipDataset

    names = [f"S001C001P001R001A{a:03d}" for a in range(1, 17)]
    root = write_cache(work / f"cache{size}", names, size, 16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker runs torch single-threaded
    out: dict = {"size": size, "batch": batch, "frames": frames, "reps": reps}
    try:
        for output in ("float", "uint8"):
            ds = CachedClipDataset(root, None, frames=frames, train=True, output=output)
            times, b = [], None
            for r in range(reps + 1):
                t0 = time.perf_counter()
                b = default_collate([ds[(r * batch + i) % len(ds)] for i in range(batch)])
                times.append(time.perf_counter() - t0)
            row = {
                "host_ms_per_batch": 1e3 * sorted(times[1:])[reps // 2],
                "bytes_per_batch": sum(v.nbytes for v in b.values() if isinstance(v, torch.Tensor)),
            }
            if ds.device_transform is not None:
                t = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    ds.device_transform(b)
                    t.append(time.perf_counter() - t0)
                row["normalise_ms_on_this_cpu"] = 1e3 * sorted(t)[reps // 2]
            out[output] = row
    finally:
        torch.set_num_threads(threads)
    out["host_speedup"] = out["float"]["host_ms_per_batch"] / out["uint8"]["host_ms_per_batch"]
    return out


def host_cost_table(h: dict) -> str:
    f, u = h["float"], h["uint8"]
    return "\n".join([
        f"Host cost of one training batch ({h['batch']} clips x {h['frames']} frames, rgb + depth, "
        f"{h['size']} px; one thread, median of {h['reps']}):",
        "",
        "| items | host ms / batch | MiB to the device / batch | normalisation (ms, this CPU) |",
        "|---|---:|---:|---:|",
        f"| float32, normalised on the host (before) | {f['host_ms_per_batch']:.1f} "
        f"| {f['bytes_per_batch'] / 2**20:.1f} | (in the host time) |",
        f"| uint8, normalised on the device (after) | {u['host_ms_per_batch']:.1f} "
        f"| {u['bytes_per_batch'] / 2**20:.1f} | {u['normalise_ms_on_this_cpu']:.1f} |",
        "",
        f"Host time per batch falls {h['host_speedup']:.1f}x.",
    ]) + "\n"  # fmt: skip


def _torch_version() -> str:
    import torch

    return torch.__version__


def table(result: dict) -> str:
    lines = [
        f"Generated by `benchmarks/data_throughput.py{' --quick' if result['quick'] else ''}` on "
        f"{result['machine']['cpus']} CPUs, {result['data']}."
        + (
            " **Quick smoke run: tiny data, few batches; not the full benchmark.**" if result["quick"] else ""
        ),
        "",
        "| stage | workers | rate |",
        "|---|---:|---:|",
    ]
    for p in result["prepare"]:
        lines.append(
            f"| prepare ({p['samples']} samples) | {p['workers']} | {p['samples_per_s']:.2f} samples/s |"
        )
    for q in result["loader"]:
        what = {"uint8": "uint8 items + normalisation in the main process", "float": "float items"}
        kind = what[q.get("output", "float")]
        lines.append(f"| loader (batch {q['batch']}, T={result['frames_per_clip']}, {kind}) | {q['workers']} "
                     f"| {q['clips_per_s']:.1f} clips/s |")  # fmt: skip
    d = result["ntu_decode"]
    if d:
        lines.append(
            f"| NTU 1080p RGB decode + crop, {result['cache_frames']} frames (fixture) | 1 "
            f"| {1 / d['seconds_per_sample']:.2f} samples/s "
            f"(NTU-60: {d['ntu60_core_hours']:.1f} core-hours) |"
        )
    lines += ["", "Training consumption (from benchmarks/results/model_throughput.json):", ""]
    tr = result["training"]
    if not tr:
        lines.append("- n/a (run benchmarks/model_throughput.py first)")
    else:
        best = max(q["clips_per_s"] for q in result["loader"])
        for r in tr:
            lines.append(
                f"- {r['label']}: {r['clips_per_s']:.1f} clips/s; best loader rate covers it "
                f"{best / r['clips_per_s']:.1f}x"
            )
    return "\n".join(lines) + "\n"


def update_markdown(path: Path, block: str, begin: str = MD_BEGIN, end: str = MD_END) -> bool:
    if not path.is_file():
        return False
    text = path.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{block}{end}{tail}")
    return True


def host_cost_main(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="modistill_bench_"))
    try:
        h = bench_host_cost(work, reps=5 if args.quick else 15)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    h["machine"] = {"cpus": os.cpu_count(), "cpu": _cpu_name(), "torch": _torch_version()}
    block = host_cost_table(h)
    print(block)
    out = args.out.with_name("host_cost.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(h, indent=2) + "\n")
    done = update_markdown(args.host_md, block, HOST_BEGIN, HOST_END)
    print(f"wrote {out}" + (f" and the section of {args.host_md}" if done else ""))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny data and few batches (smoke test)")
    ap.add_argument("--src", type=Path, default=None, help="existing NTU-layout root (default: generate)")
    ap.add_argument("--size", type=int, default=None, help="cache crop size (default 112; 32 with --quick)")
    ap.add_argument("--frames", type=int, default=16, help="cache frame budget F")
    ap.add_argument("--clip-frames", type=int, default=5, help="T frames per training clip")
    ap.add_argument("--batches", type=int, default=None, help="timed loader batches (default 40; 4 quick)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "data_throughput.json")
    ap.add_argument("--md", type=Path, default=REPO / "docs" / "prepare.md")
    ap.add_argument("--host-cost-only", action="store_true", help="only the 224 px host cost per batch")
    ap.add_argument(
        "--host-md", type=Path, default=REPO / "docs" / "benchmarks.md", help="where the host-cost table goes"
    )
    args = ap.parse_args(argv)
    if args.host_cost_only:
        return host_cost_main(args)
    size = args.size or (32 if args.quick else 112)
    batches = args.batches or (4 if args.quick else 40)
    work = Path(tempfile.mkdtemp(prefix="modistill_bench_"))
    try:
        if args.src is None:
            from modistill.data.synth import generate_dataset

            preset, rgb = ("tiny", (160, 90)) if args.quick else ("small", (320, 180))
            src = work / "src"
            t0 = time.perf_counter()
            names = generate_dataset(src, preset, seed=0, workers=2, rgb_size=rgb)
            data = f"synthetic '{preset}' set ({len(names)} samples, RGB {rgb[0]}x{rgb[1]})"
            print(f"generated {data} in {time.perf_counter() - t0:.1f} s")
        else:
            src, data = args.src, f"{args.src}"
        opts = PrepareOptions(size=size, frames=args.frames)
        prep = [bench_prepare(src, work, opts, w) for w in (1, 2)]
        for p in prep:
            rate = f"{p['samples_per_s']:.2f} samples/s ({p['seconds']:.1f} s)"
            print(f"prepare, {p['workers']} worker(s): {rate}")
        cache = Path(prep[0]["cache"])
        loader = [
            bench_loader(cache, w, 8, batches, args.clip_frames, o)
            for o in ("uint8", "float")
            for w in (0, 1, 2)
        ]
        for q in loader:
            print(f"loader ({q['output']} items), {q['workers']} worker(s): {q['clips_per_s']:.1f} clips/s")
        result = {
            "quick": args.quick,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "torch": _torch_version(),
            },
            "data": data,
            "cache_size": size,
            "cache_frames": args.frames,
            "frames_per_clip": args.clip_frames,
            "prepare": [{k: v for k, v in p.items() if k != "cache"} for p in prep],
            "loader": loader,
            "ntu_decode": bench_ntu_decode(args.frames, size),
            "training": training_rates(args.clip_frames),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    block = table(result)
    print()
    print(block)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}" + (f" and the section of {args.md}" if update_markdown(args.md, block) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
