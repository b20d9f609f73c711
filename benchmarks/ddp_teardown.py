"""How often a finished 2-process gloo job aborts at exit, by how the process group is torn down.

A DistributedDataParallel wrapper sits in a reference cycle, so after its stage returns it stays alive until
the cycle collector runs. CI saw `torchrun ... modistill.cli train` abort after a successful run (rank 1:
SIGABRT, "terminate called without an active exception", no Python frame, so during interpreter shutdown).
This script runs a minimal DDP job many times under `torchrun` in two ways:

- ``alive``: the group is destroyed while the finished stage's wrapper is still alive (what
  `engine.distributed.cleanup` did before: barrier, destroy; automatic collection had usually, not always,
  freed the wrapper by then);
- ``cleanup``: `engine.distributed.cleanup` as it is now (collect the unreachable wrappers, barrier, destroy);
- ``plain_alive`` and ``plain_cleanup``: the same two teardowns after a stage without DDP (gradients
  all-reduced by hand), to see whether anything but the wrapper matters.

Automatic garbage collection is off in the workers so that the wrapper is alive at the end of its stage in
every run (the state CI hit by chance). Prints a Markdown table and writes JSON to --out.

    python benchmarks/ddp_teardown.py --runs 60          # about 16 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from _torchrun import torchrun  # noqa: E402  (benchmarks/_torchrun.py)

MODES = ("alive", "cleanup", "plain_alive", "plain_cleanup")


def worker(mode: str) -> None:
    """One rank: a few DDP steps inside a function (the stage), then the teardown `mode` names."""
    import gc

    import torch
    import torch.distributed as dist
    from torch import nn

    from modistill.engine import distributed as D

    gc.disable()
    D.init_distributed("cpu")

    def stage() -> None:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        full = nn.Sequential(net, nn.Flatten(), nn.Linear(8, 4))
        plain = mode.startswith("plain")
        model = full if plain else nn.parallel.DistributedDataParallel(full)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for _ in range(4):
            loss = model(torch.randn(2, 3, 16, 16)).logsumexp(1).mean()
            opt.zero_grad()
            loss.backward()
            if plain:
                for p in full.parameters():
                    dist.all_reduce(p.grad)
            opt.step()
        D.broadcast_buffers(net)

    stage()
    if mode.endswith("alive"):  # the former `cleanup`
        dist.barrier()
        dist.destroy_process_group()
    else:
        D.cleanup()


def launch(mode: str, timeout: float) -> tuple[int, str]:
    proc = torchrun([__file__, "--worker", mode], nproc=2, threads=1, timeout=timeout, force_threads=True)
    return proc.returncode, proc.stderr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40, help="torchrun launches per mode")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ddp_teardown.json")
    ap.add_argument("--worker", choices=MODES, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    import torch

    rows = []
    for mode in MODES:
        t0, failed, aborts = time.perf_counter(), 0, 0
        for _ in range(args.runs):
            rc, err = launch(mode, args.timeout)
            failed += rc != 0
            aborts += "terminate called without an active exception" in err
        rows.append(
            {
                "mode": mode,
                "runs": args.runs,
                "failed": failed,
                "aborts": aborts,
                "seconds": time.perf_counter() - t0,
            }
        )
    print(f"2-process gloo teardown, torch {torch.__version__}, {os.cpu_count()} cores:\n")
    print("| teardown | runs | failed | of which 'terminate called' aborts |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['runs']} | {r['failed']} | {r['aborts']} |")
    result = {"torch": torch.__version__, "cpu_count": os.cpu_count(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
