"""Seed workers die with the process that started them (a killed demo or ablation leaves no orphan training)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PARENT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from modistill.pipeline.sweep import run_seeds
    from _sweep_worker import sleepy
    run_seeds(sleepy, [0, 1], sys.argv[1])
    """
)
WORKER = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    def sleepy(seed, threads, folder):
        Path(folder, f"{seed}.pid").write_text(str(os.getpid()))
        time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to see the workers")
def test_seed_workers_exit_when_their_parent_is_killed(tmp_path):
    (tmp_path / "_sweep_worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
        assert all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)  # no cleanup in the parent at all
        parent.wait()
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in pids), "seed workers outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for p in tmp_path.glob("*.pid"):
            try:
                os.kill(int(p.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
