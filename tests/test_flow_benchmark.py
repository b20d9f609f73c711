"""Smoke test of benchmarks/inference_latency.py (tiny settings; the real numbers come from a full run)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "inference_latency.py"


def test_inference_latency_quick_run(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("inference_latency", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "lat.json"
    argv = ["--quick", "--no-fixture", "--size", "32", "--width", "0.125", "--frames", "3", "--out", str(out)]
    threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        assert mod.main(argv) == 0
    finally:  # the script sets process-wide thread counts; leave the rest of the session unaffected
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    res = json.loads(out.read_text())
    (video,) = res["videos"]
    assert video["resolution"] == "320x240" and video["frames"] == 48
    for name in ("rgb1", "rgb2", "flow2"):
        wall = video[name]["wall"]
        assert wall["decode"] > 0 and wall["model"] > 0
        assert abs(wall["total"] - sum(wall[s] for s in mod.STAGES)) < 1e-9  # one repeat: total = sum
        assert (wall["flow"] > 0) == (name == "flow2")  # only the two-stream flow model computes flow
    assert res["models"]["rgb2"]["params"] > res["models"]["rgb1"]["params"]
    assert 0 < res["summary"]["wall"]["flow_share_of_flow2"] < 1
    assert "| generated_0.avi (320x240) | flow2 |" in capsys.readouterr().out
