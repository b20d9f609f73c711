"""Fidelity of the recipes to the paper and the released code (issue 9, section 1): each test fails on the
behaviour before the fix.

- step 3 with connections selects its best epoch in the graph it trains in (depth injected), and reports the
  hall stream alone (strict) and the step-4 model before fine-tuning beside it;
- rows 6/7 are each stream's logits inside the step-2 model (connections active);
- the Hoffman baseline starts from step 1 (hall from the depth network), and row 3 trains the hall classifier;
- the released-code preset is one exact stage plan, in the ablation variant and in configs/released_code.yaml;
- in the inverted direction the step-3 teacher is the whole frozen step-2 model and no student signal reaches it;
- step 4 gives the hall stream a stand-in for its lost depth connections.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _recipe_utils import TrainSpy, differing, fake_finished_stage, make_exp, plan, stream_state, tiny_cache

from modistill.distill import compute_loss
from modistill.pipeline import runner
from modistill.pipeline.runner import build_network, predictor, run_recipe
from modistill.pipeline.session import cache_datasets, load_experiment
from modistill.recipes import DepthRecipeConfig, build_recipe
from modistill.recipes.ablation import VARIANTS, variant_config
from modistill.recipes.depth import RELEASED_PRESET

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tiny_cache(tmp_path_factory)


def _stages(**kw) -> dict:
    return {s.name: s for s in build_recipe(DepthRecipeConfig(**kw))}


def _batch(seed: int = 0, b: int = 2, t: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(b, t, 3, size, size, generator=g) for m in ("rgb", "depth")}


def _net(exp, stage, seed: int = 0):
    torch.manual_seed(seed)
    net = build_network(exp, stage, 3).eval()
    with torch.no_grad():  # random BN statistics, so that streams differ clearly from their init
        for name, buf in net.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return net


# --- item 1: step 3 is selected in the graph it trains in ------------------------------------------------
def test_step3_selects_its_best_epoch_with_depth_injected(cache, tmp_path, monkeypatch):
    exp = make_exp(cache, tmp_path / "s3")
    fake_finished_stage(exp, "step1_rgb", seed=1)
    fake_finished_stage(exp, "step1_depth", seed=2)
    fake_finished_stage(exp, "step2", seed=3)
    seen = {}
    real = runner.train_stage

    def spy(model, **kw):
        factory, _, _ = cache_datasets(exp)
        val = factory("val", ("rgb", "depth"), False)
        batch = next(iter(torch.utils.data.DataLoader(val, batch_size=3)))
        batch = val.device_transform(batch) if getattr(val, "device_transform", None) else batch  # uint8 items
        model.eval()
        with torch.no_grad():
            selected = kw["predict_fn"](model, batch)
            joint = model({"rgb": batch["rgb"], "depth": batch["depth"]}).streams["hall"].video_logits
            alone = model({"rgb": batch["rgb"]}, streams=("hall",)).logits
        seen.update(selected=selected, joint=joint, alone=alone)
        return real(model, **kw)

    monkeypatch.setattr(runner, "train_stage", spy)
    factory, k, _ = cache_datasets(exp)
    res = run_recipe(exp, factory, k, only=["step3"])["step3"].result
    # The validation metric is the hall stream's logits with the frozen depth stream injecting depth ...
    torch.testing.assert_close(seen["selected"], seen["joint"], rtol=0, atol=0)
    assert not torch.allclose(seen["selected"], seen["alone"])  # ... not the hall stream alone on RGB
    assert res["test"]["paper_row"] == "13" and res["test"]["inputs"] == ["rgb", "depth"]
    assert "uses depth at test" in res["test"]["evaluation"]
    strict = res["extra"]["hall stream alone (RGB, strict)"]
    assert strict["paper_row"] == "13-strict" and strict["inputs"] == ["rgb"] and strict["streams"] == ["hall"]
    # The old reading stays available as an option.
    s3 = _stages(step3_select="strict")["step3"]
    assert s3.evaluate.streams == ("hall",) and s3.extra[0].paper_row == "13"


def test_step4_reports_the_model_before_fine_tuning(cache, tmp_path, monkeypatch):
    exp = make_exp(cache, tmp_path / "s4")
    for i, name in enumerate(["step1_rgb", "step1_depth", "step2", "step3"]):
        fake_finished_stage(exp, name, seed=20 + i)
    spy = TrainSpy(runner.train_stage)
    monkeypatch.setattr(runner, "train_stage", spy)
    factory, k, _ = cache_datasets(exp)
    run = run_recipe(exp, factory, k, only=["step4"])["step4"]
    init = run.result["extra"]["before fine-tuning (rgb+hall)"]
    assert init["paper_row"] == "13-init" and init["inputs"] == ["rgb"] and init["weights"] == "init"
    # Computed from the handed-over weights (the state at the start of training), on the test split.
    st = plan(exp)["step4"][0]
    net = build_network(exp, st, 3)
    net.load_state_dict(spy.start["step4"])
    from modistill.engine.evaluate import evaluate

    acc = evaluate(net, predictor(st.extra[0]), factory("test", ("rgb",), False), batch_size=4).accuracy
    assert init["accuracy"] == acc


# --- step 4: what the hall stream receives for its lost depth source --------------------------------------
def test_step4_standin_is_the_depth_streams_unit1_mean_on_training_data(cache, tmp_path, monkeypatch):
    from modistill.pipeline.handover import source_unit1_means
    from modistill.pipeline.runner import stream_spec

    exp = make_exp(cache, tmp_path / "si")
    for i, name in enumerate(["step1_rgb", "step1_depth", "step2"]):
        fake_finished_stage(exp, name, seed=30 + i)
    w3 = fake_finished_stage(exp, "step3", seed=33)
    spy = TrainSpy(runner.train_stage)
    monkeypatch.setattr(runner, "train_stage", spy)
    factory, k, _ = cache_datasets(exp)
    st4 = plan(exp)["step4"][0]
    (sd,) = st4.standins
    assert (sd.target, sd.mode, sd.source_init, sd.stages) == ("hall", "mean", "step3/depth", (1, 2, 3, 4))
    run_recipe(exp, factory, k, only=["step4"])
    means = source_unit1_means(stream_spec(exp, "depth"), stream_state(w3, "depth"), 3,
                               factory("train", ("depth",), False), "depth", (1, 2, 3, 4), batch_size=2)
    for s in (1, 2, 3, 4):
        got = spy.start["step4"][f"standin_values.hall_{s}"]
        torch.testing.assert_close(got, means[s], rtol=1e-5, atol=1e-6)
        assert float(got.abs().sum()) > 0
    # By hand for stage 1: relu of unit 1's output of the depth stream, averaged over frames and positions.
    net = build_network(exp, plan(exp)["step3"][0], 3)
    net.streams["depth"].load_state_dict(stream_state(w3, "depth"))
    depth = net.streams["depth"].eval()
    train = factory("train", ("depth",), False)
    clips = torch.stack([train[i]["depth"] for i in range(6)])
    if getattr(train, "device_transform", None):  # uint8 items, normalised on the device as in training
        clips = train.device_transform({"depth": clips})["depth"]
    with torch.no_grad():
        m = torch.relu(depth.unit0(1, depth.stem(clips)))
    torch.testing.assert_close(spy.start["step4"]["standin_values.hall_1"], m.mean(dim=(0, 2, 3)),
                               rtol=1e-4, atol=1e-6)
    # "drop": no stand-in, the hall stream runs as a plain network (the released code's S4).
    assert _stages(step4_hall_source="drop")["step4"].standins == ()
    assert _stages(step3_connections=False)["step4"].standins == ()  # nothing was lost


def test_standin_forms_of_eq2():
    """Paper form: m = 0 feeds zeros to unit 2's residual branch (unlike dropping the connection, which feeds
    relu(a)); the released form relu(a) + a*m with m = 0 is exactly the dropped connection."""
    from modistill.models import MultiStreamNet, StreamSpec
    from modistill.models.connections import StandIn

    spec = {"hall": StreamSpec(backbone="resnet18", modality="rgb", width=0.125)}
    x = {"rgb": _batch()["rgb"]}
    outs = {}
    for name, sds in [("drop", []), ("paper0", [StandIn("hall", variant="paper")]),
                      ("released0", [StandIn("hall", variant="released")])]:
        torch.manual_seed(0)
        net = MultiStreamNet(spec, 3, standins=sds).eval()
        outs[name] = net(x).logits
    assert torch.equal(outs["released0"], outs["drop"])
    assert not torch.allclose(outs["paper0"], outs["drop"])
    torch.manual_seed(0)
    learned = MultiStreamNet(spec, 3, standins=[StandIn("hall", learnable=True)])
    assert {n for n, _ in learned.named_parameters() if n.startswith("standin")} == {
        f"standin_values.hall_{s}" for s in (1, 2, 3, 4)}


# --- item 4: rows 6 and 7 in the joint graph --------------------------------------------------------------
def test_rows_6_and_7_are_the_streams_inside_the_teacher(tmp_path):
    exp = load_experiment({"out_dir": str(tmp_path), "model": {"backbone": "resnet18", "width": 0.125}})
    st = plan(exp)["step2"][0]
    net = _net(exp, st)
    batch = _batch()
    ev = {e.paper_row: e for e in st.extra}
    with torch.no_grad():
        joint = net(batch)
        row7 = predictor(ev["7"])(net, batch)
        row6 = predictor(ev["6"])(net, batch)
        rgb_alone = predictor(ev["7-alone"])(net, batch)
    torch.testing.assert_close(row7, joint.streams["rgb"].video_logits, rtol=0, atol=0)
    torch.testing.assert_close(row6, joint.streams["depth"].video_logits, rtol=0, atol=0)
    assert not torch.allclose(row7, rgb_alone)  # depth -> rgb is active in row 7, dropped in 7-alone
    assert ev["7"].inputs == ("rgb", "depth") and ev["7-alone"].inputs == ("rgb",)


# --- item 3: the Hoffman baseline -------------------------------------------------------------------------
def test_hoffman_starts_from_step1_with_hall_from_depth(cache, tmp_path, monkeypatch):
    exp = make_exp(cache, tmp_path / "h", ["recipe.name=hoffman", "recipe.hoffman_loss=hall"])
    w_rgb = fake_finished_stage(exp, "step1_rgb", seed=41)
    w_depth = fake_finished_stage(exp, "step1_depth", seed=42)
    spy = TrainSpy(runner.train_stage)
    monkeypatch.setattr(runner, "train_stage", spy)
    factory, k, _ = cache_datasets(exp)
    runs = run_recipe(exp, factory, k)
    assert runs["step1_rgb"].reused and runs["step1_depth"].reused
    start = spy.start["hoffman_hall"]
    assert differing(stream_state(start, "rgb"), stream_state(w_rgb, "rgb")) == []
    assert differing(stream_state(start, "depth"), stream_state(w_depth, "depth")) == []
    assert differing(stream_state(start, "hall"), stream_state(w_depth, "depth")) == []
    # Row 3 (eq. 3 only): the hall classifier is trained with CE (Hoffman et al. train every network's
    # classifier), so the RGB-only prediction never averages in a classifier nothing trained.
    st = plan(exp)["hoffman_hall"][0]
    assert st.loss.hoffman_ce == ("rgb", "depth", "hall")
    best = runner.load_file(str(runs["hoffman_hall"].dir / "checkpoints" / "best.safetensors"))
    assert not torch.equal(best["streams.hall.backbone.fc.weight"], w_depth["streams.depth.backbone.fc.weight"])
    rgb_only = {s.name: s for s in build_recipe(DepthRecipeConfig(name="hoffman", hoffman_loss="hall",
                                                                  hoffman_eq3_head="rgb_only"))}
    assert rgb_only["hoffman_hall"].evaluate.streams == ("rgb",)
    assert rgb_only["hoffman_hall"].loss.hoffman_ce == ("rgb", "depth")


# --- item 5: one released-code preset ---------------------------------------------------------------------
def test_released_preset_stage_plan_in_variant_and_config():
    cfg = load_experiment(REPO / "configs" / "released_code.yaml")
    variant = variant_config(load_experiment({}), VARIANTS["released"])
    assert VARIANTS["released"].overrides == RELEASED_PRESET
    assert cfg.recipe == variant.recipe  # one preset: the YAML mirrors the variant exactly
    s = {st.name: st for st in build_recipe(variant.recipe)}
    # S2: additive connections depth -> rgb; S3: no connections; S4: late fusion, no connections.
    assert [(c.source, c.target, c.variant) for c in s["step2"].connections] == [("depth", "rgb", "released")]
    assert s["step3"].connections == () and s["step4"].connections == () and s["step4"].standins == ()
    loss = s["step3"].loss
    assert (loss.hall_reduction, loss.hall_layers, loss.student_temperature) == ("sum", {"layer4": 0.01}, True)
    assert s["step4"].paper_row == "15-nc" and s["step3"].paper_row == "14"
    # Steps 2 and 4 are switched separately; `connections` alone still switches both (row 9).
    assert _stages(connections=False)["step4"].connections == ()
    assert _stages(step4_connections=False)["step2"].connections != ()


# --- item 6: the inverted direction -----------------------------------------------------------------------
def test_inverted_step3_teacher_is_the_frozen_step2_model_and_gets_no_student_signal(tmp_path):
    exp = load_experiment({"out_dir": str(tmp_path), "model": {"backbone": "resnet18", "width": 0.125}},
                          ["recipe.direction=rgb_to_depth"])
    st = plan(exp)["step3"][0]
    assert {s.name: (s.init, s.frozen) for s in st.streams} == {
        "rgb": ("step2/rgb", True), "depth": ("step2/depth", True), "hall": ("step2/depth", False)}
    assert [(c.source, c.target) for c in st.connections] == [("rgb", "depth"), ("rgb", "hall")]
    net = _net(exp, st)
    for p in net.parameters():  # not frozen here: any gradient reaching the teacher would show
        p.requires_grad_(True)
    batch = _batch()
    out = net(batch)
    loss, _ = compute_loss(st.loss, out, torch.tensor([0, 2]))
    loss.backward()
    # The target-producing depth stream gets no gradient even unfrozen; the teacher's RGB stream would (through
    # its connection into the student, as depth does in the default direction), and the recipe freezes it.
    assert all(p.grad is None or not p.grad.any() for p in net.streams["depth"].parameters())
    assert any(p.grad is not None and p.grad.any() for p in net.streams["hall"].parameters())
    assert set(st.frozen) == {"rgb", "depth"}
    # Forward: the teacher's targets do not depend on the student at all, but do on its own RGB stream.
    target = out.streams["depth"].features["layer4"].detach()
    with torch.no_grad():
        for p in net.streams["hall"].parameters():
            p.add_(0.5)
        assert torch.equal(net(batch).streams["depth"].features["layer4"], target)
        for p in net.streams["rgb"].parameters():
            p.mul_(0.5)
        assert not torch.equal(net(batch).streams["depth"].features["layer4"], target)
    rows = {s.name: s.paper_row for s in build_recipe(exp.recipe)}
    assert rows == {"step1_rgb": "2", "step1_depth": "1", "step2": "8a", "step3": "13a", "step4": "15a"}
    assert {e.paper_row for e in plan(exp)["step2"][0].extra} >= {"6a", "7a"}


def test_eq3_settings_do_not_rekey_stages_that_do_not_use_eq3(tmp_path):
    """Stage keys stay stable where semantics do not change: steps 1 and 2 (cross-entropy) keep their keys
    whatever eq. 3's reduction and weight are, while step 3 (which computes eq. 3) changes."""
    base = plan(load_experiment({"out_dir": str(tmp_path)}))
    other = plan(load_experiment({"out_dir": str(tmp_path)}, ["recipe.hall_reduction=mean",
                                                              "recipe.hall_layers={layer4: 1.0}"]))
    assert [n for n in base if base[n][1] == other[n][1]] == ["step1_rgb", "step1_depth", "step2"]
