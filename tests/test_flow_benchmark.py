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
    assert video["resolution"] == "320x240" and video["frames"] == 48 and not video["real"]
    assert res["dtypes"][0] == "fp32" and res["deployed_dtype"] in res["dtypes"]
    for dtype in res["dtypes"]:
        for name in ("rgb1", "rgb2", "flow2"):
            wall = video[dtype][name]["wall"]
            assert wall["decode"] > 0 and wall["model"] > 0
            assert abs(wall["total"] - sum(wall[s] for s in mod.STAGES)) < 1e-9  # one repeat: total = sum
            assert (wall["flow"] > 0) == (name == "flow2")  # only the two-stream flow model computes flow
        assert 0 < res["summary"][dtype]["all"]["wall"]["flow_share_of_flow2"] < 1
    assert res["models"]["rgb2"]["params"] > res["models"]["rgb1"]["params"]
    # Forward efficiency: FLOPs counted twice (FlopCounterMode and the GEMM shapes) agree, each runtime is
    # related to the peaks of its own dtype, and what cannot run says why.
    fwd = res["forward"]["rgb2"]
    assert fwd["flops"] == fwd["gemm_flops"] > 0
    rows = {r["runtime"]: r for r in fwd["rows"]}
    for name in ("pytorch fp32", "pytorch bf16 (deployed)", "onnxruntime fp32 (deployed)"):
        r = rows[name]
        assert r["achieved_flops"] == fwd["flops"] / r["seconds"]
        if r["native"]:
            assert r["fraction_of_square_peak"] == r["achieved_flops"] / fwd["peaks"][r["dtype"]]["square"]
        else:  # emulated bf16 (a CPU without AVX512-BF16/AMX): no fraction of a meaningless peak
            assert r["dtype"] != "fp32" and r["fraction_of_square_peak"] is None
    assert "error" in rows["onnxruntime bf16"] or rows["onnxruntime bf16"]["seconds"] > 0
    printed = capsys.readouterr().out
    assert "| generated_0.avi (320x240) | fp32 | flow2 |" in printed and "% of model-GEMM peak" in printed
