"""Throughput of ``modistill.data.read_skeleton`` on the real NTU fixtures (repeated), and the projected time
to parse all of NTU RGB+D 60 (56,880 samples, REF §4; about 250 KB per .skeleton file).

    python benchmarks/skeleton_parse.py [--fixtures DIR] [--repeat 20]

Single process, one core, rates from CPU time (``time.process_time``); the files are read from the page
cache after the first pass, so disk speed is not measured (on a cold disk, reading 14 GB adds its own time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from modistill.data import read_skeleton

NTU60_FILES = 56_880
NTU60_MEAN_BYTES = 250_000  # the task brief's "~250 KB each"; the fixtures average about 270 KB


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    default = Path(os.environ.get("MODISTILL_NTU_FIXTURES", repo.parent / "shared" / "fixtures" / "ntu"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", type=Path, default=default, help="folder with .skeleton files")
    ap.add_argument("--repeat", type=int, default=20, help="passes over the files")
    args = ap.parse_args(argv)
    files = sorted(args.fixtures.glob("*.skeleton"))
    if not files:
        print(f"no .skeleton files in {args.fixtures}", file=sys.stderr)
        return 1
    sizes = [f.stat().st_size for f in files]
    for f in files:  # warm the page cache and the imports
        read_skeleton(f)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.repeat):
        for f in files:
            read_skeleton(f)
    wall, dt = time.perf_counter() - t0, time.process_time() - c0
    n = len(files) * args.repeat
    mb = sum(sizes) * args.repeat / 1e6
    fps, mbps = n / dt, mb / dt
    by_files = NTU60_FILES / fps
    by_bytes = NTU60_FILES * NTU60_MEAN_BYTES / 1e6 / mbps
    print(
        f"{n} parses of {len(files)} files ({sum(sizes) / len(files) / 1e3:.0f} KB mean): "
        f"{dt:.2f} s CPU, {wall:.2f} s wall (rates below use CPU time: robust to a busy machine)"
    )
    print(f"{fps:.1f} files/s, {mbps:.1f} MB/s, {1e3 * dt / n:.2f} ms/file")
    print(
        f"projected NTU-60 ({NTU60_FILES} files): {by_files / 60:.1f} min by file count, "
        f"{by_bytes / 60:.1f} min by size (one core)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
