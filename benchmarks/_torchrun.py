"""Launching a benchmark script under `torchrun` on this machine: one environment, one command line.

Imported by the scripts beside it (run as scripts, their folder is on ``sys.path``): `ddp_step.py`,
`ddp_teardown.py`, `device_check.py`; `tests/_torchrun.py` takes its port and variables from here. Needs nothing
beyond the standard library, as the GPU machine runs them from the working tree.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# What torchrun sets for its workers: a script run under torchrun itself must not hand them to the job it starts.
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(
    script_args: list[str], *, nproc: int, threads: int, timeout: float, force_threads: bool = False
) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node NPROC SCRIPT_ARGS`` on a free local port, with the
    repository on PYTHONPATH and ``threads`` OpenMP threads per process (unless OMP_NUM_THREADS is already set
    and ``force_threads`` is False)."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if force_threads:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *script_args,
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
