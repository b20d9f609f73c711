"""DDP training step with the parameters in the default layout vs in channels_last (what the engine does).

The model computes channels_last (modistill's VideoStream); before the engine converted its parameters, DDP's
gradient buckets followed the parameters' default strides while autograd produced channels_last gradients for
the 1x1 convolutions, and every backward warned "Grad strides do not match bucket view strides". This script
times the step both ways under `torchrun` (gloo on CPU, nccl on CUDA) and counts that warning.

    python benchmarks/ddp_step.py                     # 2 processes, ResNet-18 two-stream, 112 px, T=5
    python benchmarks/ddp_step.py --quick             # tiny model, seconds
    python benchmarks/ddp_step.py --device cuda --nproc 1

It launches itself once per layout with `python -m torch.distributed.run`; rank 0 writes one JSON row per
layout to --out and the Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from _torchrun import torchrun  # noqa: E402  (benchmarks/_torchrun.py)

WARNING = "Grad strides do not match bucket view strides"


def worker(args: argparse.Namespace) -> None:
    """One rank: build the model, optionally convert its layout, wrap in DDP, time optimizer steps."""
    import torch
    import torch.nn.functional as F

    from modistill.engine import distributed as D
    from modistill.engine.utils import match_memory_format
    from modistill.models import Connection, MultiStreamNet, StreamSpec

    info = D.init_distributed(args.device)
    own_group = not torch.distributed.is_initialized()
    if own_group:  # one process: the engine skips the group, but DDP needs one (nccl on CUDA, gloo on CPU)
        if args.device.startswith("cuda"):
            torch.cuda.set_device(info.local_rank)
        backend = "nccl" if args.device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend, init_method="env://", rank=0, world_size=1)
    dev = torch.device("cuda", info.local_rank) if args.device.startswith("cuda") else torch.device("cpu")
    torch.manual_seed(0)
    specs = {n: StreamSpec(args.backbone, n, args.width) for n in ("rgb", "depth")}
    model = MultiStreamNet(specs, 60, [Connection("depth", "rgb")]).to(dev)
    if args.layout == "channels_last":
        match_memory_format(model)
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[dev.index] if dev.type == "cuda" else None
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(info.rank)
    clips = torch.randn(args.batch, args.frames, 3, args.size, args.size, generator=g).to(dev)
    batch = {"rgb": clips, "depth": clips.clone()}
    labels = torch.randint(0, 60, (args.batch,), generator=g).to(dev)
    times = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(args.warmup + args.iters):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            loss = F.cross_entropy(net(batch).logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    n_warn = sum(WARNING in str(w.message) for w in caught)
    step = sorted(times)[len(times) // 2]
    if info.rank == 0:
        row = {
            "layout": args.layout,
            "world_size": torch.distributed.get_world_size(),
            "backend": torch.distributed.get_backend(),
            "device": str(dev),
            "model": f"{args.backbone} w{args.width:g} two-stream {args.size}px T{args.frames}",
            "per_rank_batch": args.batch,
            "threads_per_rank": torch.get_num_threads(),
            "step_s": step,
            "clips_per_s": args.batch * torch.distributed.get_world_size() / step,
            "grad_stride_warnings": n_warn,
        }
        Path(args.row).write_text(json.dumps(row) + "\n")
    del net, opt  # the wrapper holds the group: free it before the teardown (see `distributed.cleanup`)
    if own_group:
        D.destroy_group()
    D.cleanup()


def launch(args: argparse.Namespace, layout: str, row: Path) -> dict:
    script_args = [
        __file__, "--worker", "--layout", layout, "--row", str(row),
        "--device", args.device, "--backbone", args.backbone, "--width", str(args.width),
        "--size", str(args.size), "--frames", str(args.frames), "--batch", str(args.batch),
        "--iters", str(args.iters), "--warmup", str(args.warmup),
    ]  # fmt: skip
    threads = max(1, (os.cpu_count() or 1) // args.nproc)
    proc = torchrun(script_args, nproc=args.nproc, threads=threads, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun ({layout}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(row.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model and few steps (smoke test)")
    ap.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl)")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--width", type=float, default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1, help="per-rank batch (clips)")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ddp_step.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--layout", default="channels_last", help=argparse.SUPPRESS)
    ap.add_argument("--row", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.width = args.width or (0.125 if args.quick else 1.0)
    args.size = args.size or (32 if args.quick else 112)
    args.iters = args.iters or (3 if args.quick else 10)
    if args.worker:
        worker(args)
        return 0
    rows = []
    for layout in ("default", "channels_last"):
        row_file = args.out.with_suffix(f".{layout}.tmp")
        row_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            rows.append(launch(args, layout, row_file))
        finally:
            row_file.unlink(missing_ok=True)
    base = rows[0]["step_s"]
    lines = [
        f"DDP step, {rows[0]['world_size']} x {rows[0]['backend']} on {rows[0]['device']}, {rows[0]['model']}, "
        f"per-rank batch {args.batch}, {rows[0]['threads_per_rank']} thread(s) per rank:",
        "",
        "| parameters | step (ms) | clips/s | vs default | grad-stride warnings |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layout']} | {r['step_s'] * 1e3:.1f} | {r['clips_per_s']:.2f} | {base / r['step_s']:.2f}x "
            f"| {r['grad_stride_warnings']} |"
        )
    print("\n".join(lines))
    result = {"quick": args.quick, "rows": rows}
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
