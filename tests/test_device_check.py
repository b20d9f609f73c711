"""benchmarks/device_check.py --device cpu --quick: every section runs (the code paths of the GPU check, at tiny
sizes) on a machine set up like the GPU box, i.e. without PyAV, and the JSON says what the GPU run must show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "device_check.py"


@pytest.mark.slow
def test_device_check_quick_on_cpu_without_pyav(tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "av"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        "raise ImportError('No module named av (the GPU machine has no PyAV)')\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "shim"), str(REPO)])  # `PYTHONPATH=.` on the GPU box
    out = tmp_path / "out"
    # No time budget here: on a loaded machine the budget would skip sections (a GPU run keeps its budget).
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--budget", "100000", "--out", str(out)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    data = json.loads((out / "device_check.json").read_text())
    sec = data["sections"]
    assert {n: s["status"] for n, s in sec.items()} == dict.fromkeys(
        ("environment", "matmul", "model", "loader", "torchrun", "onnx", "compile"), "ok"
    )
    assert sec["environment"]["data"]["av"] is None  # really ran without PyAV
    rows = sec["model"]["data"]["rows"]
    assert {(r["backbone"], r["streams"], r["dtype"]) for r in rows} == {
        (b, s, d) for b in ("resnet50", "resnet18") for s in (0, 2) for d in ("fp32", "bf16")
    }
    assert all(r["step_s"] > 0 and r["flops_per_step"] > 0 for r in rows)
    assert sec["compile"]["data"]["rows"][0]["compile"] is True
    ld = sec["loader"]["data"]
    assert ld["device_vs_host_max_abs_diff"] == 0.0  # uint8 + normalisation where the batch is == host floats
    assert {r["output"] for r in ld["rows"]} == {"uint8", "float"}
    tr = sec["torchrun"]["data"]
    assert tr["crash_exit"] != 0 and tr["crash_left_checkpoint"] and tr["resumed_after_epoch_1"]
    assert tr["resume"]["backend"] == "gloo" and tr["resume"]["epochs"] == 2 and tr["test_lines"] == 1
    assert tr["resume"]["ddp_stride_warnings"] == 0 and tr["stride_warnings_in_output"] == 0
    assert tr["resume_vs_fresh_max_abs_diff"] == 0.0  # CPU, deterministic: a resume replays exactly
    assert sec["onnx"]["data"]["ok"] and sec["onnx"]["data"]["top1_agree"]
    targets = data["targets"]
    assert "resnet50 bf16: two-stream vs two plain steps" in targets
    assert not targets["resnet50 two-stream: bf16 vs fp32"]["applies"]  # a GPU target
    md = (out / "device_check.md").read_text()
    assert "| target | value | goal | met |" in md and "n/a (GPU target)" in md
