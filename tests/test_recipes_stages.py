"""Each stage of the four-step recipe (Garcia et al. 2018 §3.2, REF §3) trains what it should and nothing
else, and starts from the right weights of the earlier stages (stage hand-over).

Earlier stages are fabricated ("finished" stage folders with distinctive random weights and BatchNorm buffers,
tests/_recipe_utils.py) so each test trains one stage only, for one epoch at the smallest size.
"""

from __future__ import annotations

import json

import pytest
import torch
from _recipe_utils import (
    TrainSpy,
    differing,
    fake_finished_stage,
    make_exp,
    plan,
    stream_state,
    tiny_cache,
)
from safetensors.torch import load_file

from modistill.pipeline import runner
from modistill.pipeline.runner import _init_from_stages, build_network, init_seed, run_recipe
from modistill.pipeline.session import cache_datasets


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tiny_cache(tmp_path_factory)


@pytest.fixture
def spy(monkeypatch):
    s = TrainSpy(runner.train_stage)
    monkeypatch.setattr(runner, "train_stage", s)
    return s


def _run(exp, only):
    factory, k, _ = cache_datasets(exp)
    assert k == 3
    return run_recipe(exp, factory, k, only=only)


def _best(run) -> dict[str, torch.Tensor]:
    return load_file(str(run.dir / "checkpoints" / "best.safetensors"))


def _params_changed(before: dict, after: dict, stream: str, net_param_names: set[str]) -> list[str]:
    """Parameter (not buffer) tensors of ``stream`` that did NOT change."""
    b, a = stream_state(before, stream), stream_state(after, stream)
    names = [k for k in b if f"streams.{stream}.{k}" in net_param_names]
    assert names
    return [k for k in names if torch.equal(a[k], b[k])]


def _param_names(exp, stage_name) -> set[str]:
    st = plan(exp)[stage_name][0]
    return {n for n, _ in build_network(exp, st, 3).named_parameters()}


def test_step1_trains_its_stream_from_a_reproducible_init(cache, tmp_path, spy):
    exp = make_exp(cache, tmp_path / "a")
    run = _run(exp, ["step1_rgb"])["step1_rgb"]
    assert not run.reused and run.result["test"]["n"] == 6
    start = spy.start["step1_rgb"]
    # Fresh weights come from (train.seed, stage name) alone, whatever ran before in this process.
    torch.manual_seed(12345)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(exp.train.seed, "step1_rgb"))
        ref = build_network(exp, plan(exp)["step1_rgb"][0], 3).state_dict()
    assert differing(start, ref) == []
    best = _best(run)
    assert {k.split(".")[1] for k in best} == {"rgb"}
    unchanged = _params_changed(start, best, "rgb", _param_names(exp, "step1_rgb"))
    assert unchanged == [], unchanged  # Adam moves every parameter that gets a gradient
    assert spy.frozen["step1_rgb"] == set() and spy.no_grad["step1_rgb"] == set()


def test_step2_starts_from_step1_and_trains_both_streams(cache, tmp_path, spy):
    exp = make_exp(cache, tmp_path / "b")
    w_rgb = fake_finished_stage(exp, "step1_rgb", seed=1)
    w_depth = fake_finished_stage(exp, "step1_depth", seed=2)
    runs = _run(exp, ["step2"])
    assert runs["step1_rgb"].reused and runs["step1_depth"].reused and not runs["step2"].reused
    start = spy.start["step2"]
    assert differing(stream_state(start, "rgb"), stream_state(w_rgb, "rgb")) == []
    assert differing(stream_state(start, "depth"), stream_state(w_depth, "depth")) == []
    assert spy.frozen["step2"] == set() and spy.no_grad["step2"] == set()
    best = _best(runs["step2"])
    names = _param_names(exp, "step2")
    for s in ("rgb", "depth"):
        assert _params_changed(start, best, s, names) == [], s
        # BatchNorm statistics were updated too (train mode).
        assert any(
            k.endswith("running_mean") for k in differing(stream_state(start, s), stream_state(best, s))
        )
    # The teacher's extra evaluations (Table 2 rows 6, 7) and the fused one (row 8) are reported.
    res = runs["step2"].result
    assert res["test"]["paper_row"] == "8"
    assert {v["paper_row"] for v in res["extra"].values()} == {"6", "7", "6-alone", "7-alone"}


def test_step3_freezes_depth_bit_for_bit_and_trains_hall(cache, tmp_path, spy):
    exp = make_exp(cache, tmp_path / "c")
    fake_finished_stage(exp, "step1_rgb", seed=1)
    fake_finished_stage(exp, "step1_depth", seed=2)
    w2 = fake_finished_stage(exp, "step2", seed=3)
    runs = _run(exp, ["step3"])
    start = spy.start["step3"]
    depth2 = stream_state(w2, "depth")
    # Hand-over: both streams start as the step-2 depth stream (the hall stream reads RGB, same architecture).
    assert differing(stream_state(start, "depth"), depth2) == []
    assert differing(stream_state(start, "hall"), depth2) == []
    assert spy.frozen["step3"] == {"depth"}
    assert spy.no_grad["step3"] == {n for n in _param_names(exp, "step3") if n.startswith("streams.depth.")}
    best = _best(runs["step3"])
    assert {k.split(".")[1] for k in best} == {"depth", "hall"}
    # The frozen depth stream is bit-identical to step 2's: weights AND BatchNorm buffers (running statistics,
    # batch counts), although it ran forward in every step and fed the hall stream through the connections.
    assert differing(stream_state(best, "depth"), depth2) == []
    last = load_file(str(runs["step3"].dir / "checkpoints" / "last.safetensors"))
    assert differing(stream_state(last, "depth"), depth2) == []
    # The hallucination stream trained: every parameter and its BatchNorm statistics moved.
    assert _params_changed(start, best, "hall", _param_names(exp, "step3")) == []
    assert any(k.endswith("running_mean") for k in differing(stream_state(best, "hall"), depth2))
    # The eq. 7 parts were logged: L_hall is what the report's hallucination curve shows (paper Fig. 4).
    epochs = [json.loads(x) for x in (runs["step3"].dir / "metrics.jsonl").read_text().splitlines()]
    parts = next(r for r in epochs if r.get("kind") == "epoch")["parts"]
    assert any(k.startswith("hall/") for k in parts), parts
    # Row 13 in the graph it trained in (depth injected); 13-strict: the hall stream alone on RGB.
    assert runs["step3"].result["test"]["inputs"] == ["rgb", "depth"]
    strict = runs["step3"].result["extra"]["hall stream alone (RGB, strict)"]
    assert strict["inputs"] == ["rgb"] and strict["streams"] == ["hall"] and strict["paper_row"] == "13-strict"


def test_step4_starts_from_step2_rgb_and_step3_hall(cache, tmp_path, spy):
    exp = make_exp(cache, tmp_path / "d")
    for i, name in enumerate(["step1_rgb", "step1_depth"]):
        fake_finished_stage(exp, name, seed=10 + i)
    w2 = fake_finished_stage(exp, "step2", seed=12)
    w3 = fake_finished_stage(exp, "step3", seed=13)
    runs = _run(exp, ["step4"])
    start = spy.start["step4"]
    assert differing(stream_state(start, "rgb"), stream_state(w2, "rgb")) == []
    assert differing(stream_state(start, "hall"), stream_state(w3, "hall")) == []
    assert spy.frozen["step4"] == set() and spy.no_grad["step4"] == set()
    best = _best(runs["step4"])
    names = _param_names(exp, "step4")
    assert _params_changed(start, best, "rgb", names) == []
    assert _params_changed(start, best, "hall", names) == []
    res = runs["step4"].result["test"]
    assert res["inputs"] == ["rgb"] and res["streams"] == ["rgb", "hall"] and res["paper_row"] == "15"


def test_init_from_stages_copies_the_named_streams(cache, tmp_path):
    exp = make_exp(cache, tmp_path / "e")
    p = plan(exp)
    fake_finished_stage(exp, "step1_rgb", seed=1)
    fake_finished_stage(exp, "step1_depth", seed=2)
    w2 = fake_finished_stage(exp, "step2", seed=3)
    w3 = fake_finished_stage(exp, "step3", seed=4)
    dirs = {n: d for n, (_, _, d) in p.items()}
    net = build_network(exp, p["step4"][0], 3)
    _init_from_stages(net, p["step4"][0], dirs)
    sd = net.state_dict()
    assert differing(stream_state(sd, "rgb"), stream_state(w2, "rgb")) == []
    assert differing(stream_state(sd, "hall"), stream_state(w3, "hall")) == []
    # A missing source checkpoint is a clear error naming the file and the stage.
    (p["step3"][2] / "checkpoints" / "best.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"stage 'step4'.*step3-.*best\.safetensors"):
        _init_from_stages(build_network(exp, p["step4"][0], 3), p["step4"][0], dirs)


def test_stage_keys_are_content_addressed(cache, tmp_path):
    a = plan(make_exp(cache, tmp_path / "x"))
    b = plan(make_exp(cache, tmp_path / "y"))  # another folder: same keys
    assert {n: k for n, (_, k, _) in a.items()} == {n: k for n, (_, k, _) in b.items()}
    c = plan(make_exp(cache, tmp_path / "x", ["recipe.step3_loss=gd"]))
    same = [n for n in a if a[n][1] == c[n][1]]
    assert same == ["step1_rgb", "step1_depth", "step2"]  # step 3 changed, so did step 4 (its weights do)
    d = plan(make_exp(cache, tmp_path / "x", ["recipe.connections=false"]))
    assert [n for n in a if a[n][1] == d[n][1]] == ["step1_rgb", "step1_depth"]
    e = plan(make_exp(cache, tmp_path / "x", ["stage_epochs={step4: 3}"]))
    assert [n for n in a if a[n][1] == e[n][1]] == ["step1_rgb", "step1_depth", "step2", "step3"]
    f = plan(make_exp(cache, tmp_path / "x", ["train.progress=true", "train.num_workers=1"]))
    assert [n for n in a if a[n][1] == f[n][1]] == list(a)  # display / loader settings do not count


def test_stage_keys_follow_the_pretrained_checkpoints_content_not_its_path(cache, tmp_path):
    """Keyed on the path, a checkpoint replaced in place reused stages trained from the old weights, and the
    same weights under another path re-trained everything."""
    from safetensors.torch import save_file

    ckpt = tmp_path / "a" / "init.safetensors"
    ckpt.parent.mkdir()
    save_file({"w": torch.zeros(3)}, str(ckpt))
    moved = tmp_path / "b.safetensors"
    moved.write_bytes(ckpt.read_bytes())

    def keys(path, *extra):
        p = plan(make_exp(cache, tmp_path / "x", [f"model.pretrained={path}", *extra]))
        return {n: k for n, (_, k, _) in p.items()}

    first = keys(ckpt)
    assert keys(moved) == first  # same content elsewhere: same stages
    assert keys(f"{{rgb: {moved}, depth: {ckpt}}}") == keys(f"{{depth: {moved}, rgb: {ckpt}}}")
    save_file({"w": torch.ones(3)}, str(ckpt))  # replaced in place
    replaced = keys(ckpt)
    assert all(replaced[n] != first[n] for n in first)
