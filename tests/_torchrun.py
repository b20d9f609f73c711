"""Launching a test job under `torchrun` on this machine (gloo on the CPU): one environment, one command line."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _bench_launcher():
    """benchmarks/_torchrun.py (the benchmarks' launcher): its free port and the variables torchrun sets."""
    spec = importlib.util.spec_from_file_location("bench_torchrun", REPO / "benchmarks" / "_torchrun.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_BENCH = _bench_launcher()
free_port = _BENCH.free_port
TORCHRUN_VARS = _BENCH.TORCHRUN_VARS


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
