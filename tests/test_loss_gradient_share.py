"""benchmarks/loss_gradient_share.py (docs/losses.md): its quick run works, and the shares it reports follow from
the reductions exactly (every reduction of eq. 3 is the sum divided by a constant)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load():
    path = REPO / "benchmarks" / "loss_gradient_share.py"
    spec = importlib.util.spec_from_file_location("loss_gradient_share", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_quick_run_and_exact_scaling(tmp_path):
    bench = _load()
    out = tmp_path / "share.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    (res,) = json.loads(out.read_text())["results"]
    s = res["setting"]
    opts = {o["option"].split(" (")[0]: o for o in res["options"]}
    b, t = s["batch"], s["frames"]
    elems = res["elements_per_video"] * b
    # Gradient norms scale with the reduction's divisor and the weight, nothing else.
    g1 = opts["sample, w=1"]["grad_hall"]
    assert opts["frame, w=1"]["grad_hall"] == pytest.approx(g1 / t)
    assert opts["released: sum, w=0.01"]["grad_hall"] == pytest.approx(0.01 * b * g1)
    assert opts["mean, w=1 (former default)".split(" (")[0]]["grad_hall"] == pytest.approx(g1 * b / elems)
    assert opts["sample, w=10"]["grad_hall"] == pytest.approx(10 * g1)
    # The mean reduction leaves eq. 3 the smallest share: it switched eq. 3 off (REF §2).
    assert min(opts.values(), key=lambda o: o["hall_share"]) is opts["mean, w=1"]
    assert len({o["grad_gd"] for o in opts.values()}) == 1
