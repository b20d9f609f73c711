"""Launching a test job under `torchrun` on this machine (gloo on the CPU): one environment, one command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# What torchrun sets for its workers: a test run under torchrun itself must not hand them to the job it starts.
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_env(*paths: str | Path, **extra: str) -> dict[str, str]:
    """This process's environment without torchrun's variables; ``paths`` then the repository first on
    PYTHONPATH, one thread per process (2 ranks share the 2 cores), ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def torchrun(
    target: list[str],
    *,
    nproc: int = 2,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node NPROC ... TARGET`` on a free local port; ``target``
    is a script and its arguments, or ``["-m", module, ...]``."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *target,
    ]  # fmt: skip
    return subprocess.run(
        cmd, env=job_env() if env is None else env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
