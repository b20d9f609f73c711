"""`modistill models` command and a smoke run of benchmarks/model_throughput.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from modistill.cli import main
from modistill.models import create_model, list_models

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_models_command_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--num-classes", "10", "--width", "0.25"]) == 0
    out = capsys.readouterr().out
    expected = sum(p.numel() for p in create_model("resnet18", num_classes=10, width=0.25).parameters())
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(rows) == set(list_models())
    assert f"{expected:,}" in rows["resnet18"].split()
    assert "MultiStreamNet" in rows["twostream_resnet50"]


def test_models_command_json_and_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--filter", "resnet50", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["resnet50"]
    assert rows[0]["params"] == 23_630_972  # ResNet-50 with a 60-class head (25,557,032 - 2048 * 940 - 940)
    assert main(["models", "--filter", "nothing*"]) == 1
    assert main(["models", "--width", "0"]) == 2


def _load_benchmark():
    path = REPO / "benchmarks" / "model_throughput.py"
    spec = importlib.util.spec_from_file_location("model_throughput", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_benchmark_minimal_config_and_cli(tmp_path: Path) -> None:
    mt = _load_benchmark()
    cfg = mt.Config(backbone="resnet18", width=0.125, size=32, frames=2, batch=1, streams=2, dtype="fp32")
    row = mt.run_config(cfg, torch.device("cpu"), warmup=0, iters=1)
    assert row["step_s"] > 0 and row["frames_per_s"] == pytest.approx(2 / row["step_s"])
    # Two streams double the FLOPs of one (same backbone), up to the connection products and fusion.
    one = mt.run_config(mt.Config(**{**cfg.__dict__, "streams": 1}), torch.device("cpu"), warmup=0, iters=1)
    assert row["flops_per_step"] == pytest.approx(2 * one["flops_per_step"], rel=0.02)
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    assert (
        mt.main(
            [
                "--quick",
                "--only",
                "2-stream fp32",
                "--out",
                str(out),
                "--md",
                str(md),
                "--warmup",
                "0",
                "--matmul-size",
                "256",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["quick"] is True and len(result["results"]) == 1
    assert result["matmul_flops"]["fp32"] > 0
    assert "| resnet18 w0.125 32px T2 B1 2-stream fp32 |" in md.read_text()
