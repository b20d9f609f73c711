"""The SLURM scripts of docs/distributed.md, run as written on small data: `srun`, `scontrol`, `modistill` and
`torchrun` are stand-ins on PATH (one node; two gloo processes on the CPU for the training script)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _recipe_utils import exp_dict, tiny_cache
from _torchrun import free_port, job_env

from modistill.data import cache as C

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "distributed.md"


def script(name: str) -> str:
    """The ```bash block of the doc whose second line names ``name`` (e.g. "# prepare.sbatch: ...")."""
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S):
        if block.splitlines()[1].startswith(f"# {name}:"):
            return block
    raise AssertionError(f"{DOC}: no bash block for {name}")


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """Stand-ins: srun runs its command once (one node), scontrol names this host, modistill / torchrun are
    this interpreter's modules."""
    d = tmp_path / "bin"
    d.mkdir()
    stubs = {
        "srun": 'exec "$@"',
        "scontrol": "echo 127.0.0.1",
        "modistill": f'exec "{sys.executable}" -m modistill.cli "$@"',
        "torchrun": f'exec "{sys.executable}" -m torch.distributed.run "$@"',
    }
    for name, body in stubs.items():
        f = d / name
        f.write_text(f"#!/bin/sh\n{body}\n")
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return d


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    return job_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **extra)


def test_prepare_array_job_shards_fill_one_cache(tmp_path: Path, bin_dir: Path) -> None:
    from modistill.data.synth import generate_dataset

    src = tmp_path / "ntu"
    names = generate_dataset(src, preset="tiny", seed=0, workers=1, subjects=[1])
    sbatch = tmp_path / "prepare.sbatch"
    sbatch.write_text(script("prepare.sbatch"))
    cache = tmp_path / "cache"
    for task in range(2):  # the array job's two tasks
        env = _env(
            bin_dir, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_COUNT="2", SLURM_CPUS_PER_TASK="1"
        )
        p = subprocess.run(
            ["bash", str(sbatch), str(src), str(cache)], env=env, capture_output=True, text=True
        )
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert sorted(r["name"] for r in C.read_index(cache)) == sorted(names)
    assert len(list(cache.glob("index.shard-*-of-2.jsonl"))) == 2
    assert C.load_config(cache).size == 224


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed support")
def test_train_script_runs_two_processes_with_c10d_rendezvous(tmp_path_factory, tmp_path, bin_dir) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(json.dumps(exp_dict(tiny_cache(tmp_path_factory), tmp_path / "run")))  # JSON is YAML
    sbatch = tmp_path / "train.sbatch"
    sbatch.write_text(script("train.sbatch"))
    env = _env(bin_dir, SLURM_JOB_NODELIST="node01", SLURM_NNODES="1", SLURM_NODEID="0",
               SLURM_JOB_ID="test", GPUS_PER_NODE="2", PORT=str(free_port()))  # fmt: skip
    p = subprocess.run(
        ["bash", str(sbatch), str(cfg), "--stage", "step1_rgb"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (stage,) = (tmp_path / "run" / "stages").iterdir()
    assert json.loads((stage / "run_config.json").read_text())["world_size"] == 2
    assert p.stdout.count("test accuracy") == 1 and "Grad strides do not match" not in p.stderr
