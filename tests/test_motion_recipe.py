"""The motion-distillation recipe (recipes/motion.py): stage definitions, the frozen flow teacher, the summary
table, and a tiny end-to-end run through the runner, the report and `modistill ablation`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modistill.core.config import ConfigError
from modistill.data.prepare import PrepareOptions, prepare_cache
from modistill.data.prepare_flow import FlowOptions, prepare_flow
from modistill.data.synth import generate_dataset
from modistill.distill.terms import compute_loss
from modistill.pipeline.runner import build_network
from modistill.pipeline.session import load_experiment
from modistill.recipes import DepthRecipeConfig, MotionRecipeConfig, build_recipe
from modistill.recipes.ablation import SETS, VARIANTS, motion_references, resolve_variants, variant_config
from modistill.recipes.experiment import ExperimentConfig
from modistill.recipes.stages import stage_to_dict, validate_recipe
from modistill.reporting.motion import motion_markdown, motion_summary

MOTION_VARIANTS = [n for n in VARIANTS if n.startswith("motion")]
LOSS_KIND = {"relation": "relation", "mars": "mars", "both": "relation_mars", "none": "ce"}


def _motion_cfg(**kw) -> MotionRecipeConfig:
    return MotionRecipeConfig(**kw)


def _stages(cfg) -> dict:
    return {s.name: s for s in build_recipe(cfg)}


@pytest.mark.parametrize("name", MOTION_VARIANTS)
def test_every_motion_variant_builds_a_valid_recipe(name):
    v = VARIANTS[name]
    exp = variant_config(ExperimentConfig(), v)
    stages = build_recipe(exp.recipe)
    validate_recipe(stages)
    by = {s.name: s for s in stages}
    names = list(by)
    # The variant's stage subset is closed under dependencies (so `run_recipe(only=...)` works) and produces
    # every row the variant reports.
    wanted = names if v.stages is None else list(v.stages)
    assert set(wanted) <= set(names)
    for st in wanted:
        assert set(by[st].depends_on) <= set(wanted), (name, st)
    produced = {ev.paper_row for st in wanted for ev in (by[st].evaluate, *by[st].extra)}
    assert set(v.rows) <= produced
    # The student: loss kind, frozen teacher (when distilling), RGB input, evaluated on RGB alone.
    cfg = exp.recipe
    student = by["motion_student"]
    assert student.loss.kind == LOSS_KIND[cfg.motion_loss]
    if cfg.motion_loss == "none":
        assert student.inputs == ("rgb",) and student.trainable == ("hall",) and not student.frozen
    else:
        assert student.frozen == ("flow",) and student.stream("flow").init == "motion_flow/flow"
        assert (student.loss.student, student.loss.teacher) == ("hall", "flow")
    assert student.stream("hall").modality == "rgb"
    assert student.stream("hall").init == ("scratch" if cfg.motion_init == "scratch" else "step1_rgb/rgb")
    assert student.evaluate.inputs == ("rgb",)
    final = by["motion_final"]
    assert final.inputs == ("rgb",) and final.fuse == ("rgb", "hall") and final.fusion == cfg.motion_fusion
    assert final.stream("hall").init == "motion_student/hall"
    assert dict(final.fusion_options) == ({"reduction": 16} if cfg.motion_fusion == "attention" else {})


def test_rgb_stage_is_the_depth_recipes_stage():
    """Same definition -> same content-addressed key: both methods share one trained RGB baseline."""
    motion = _stages(_motion_cfg())["step1_rgb"]
    depth = _stages(DepthRecipeConfig())["step1_rgb"]
    assert stage_to_dict(motion) == stage_to_dict(depth)


def test_bad_motion_knobs_are_rejected():
    with pytest.raises(ValueError, match="relation_layers"):
        _motion_cfg(relation_layers={"layer9": 1.0})
    with pytest.raises(ValueError, match="motion_loss"):
        _motion_cfg(motion_loss="gram")
    with pytest.raises(ValueError, match="temporal_weight"):
        _motion_cfg(temporal_weight=-1.0)
    with pytest.raises(ValueError, match="flow_stack"):
        _motion_cfg(flow_stack=0)
    with pytest.raises(ConfigError, match="motion_fusion"):
        load_experiment({}, ["recipe.name=motion", "recipe.motion_fusion=sum"])


def test_flow_stack_sets_teacher_channels_and_stage_key():
    exp = load_experiment(
        {"model": {"backbone": "resnet18", "width": 0.125}}, ["recipe.name=motion", "recipe.flow_stack=3"]
    )
    st = _stages(exp.recipe)
    net = build_network(exp, st["motion_flow"], num_classes=4)
    assert net.streams["flow"].backbone.conv1.in_channels == 6
    one = _stages(_motion_cfg(flow_stack=1))["motion_flow"]
    assert stage_to_dict(one) != stage_to_dict(st["motion_flow"])


@pytest.mark.parametrize("loss", ["relation", "mars", "both"])
def test_frozen_flow_teacher_gets_no_gradient(loss):
    torch.manual_seed(0)
    exp = load_experiment(
        {"model": {"backbone": "resnet18", "width": 0.125}},
        ["recipe.name=motion", f"recipe.motion_loss={loss}", "recipe.temporal_weight=0.5"],
    )
    stage = _stages(exp.recipe)["motion_student"]
    net = build_network(exp, stage, num_classes=3)
    net.freeze("flow")
    net.train()
    teacher_before = {k: v.clone() for k, v in net.streams["flow"].state_dict().items()}
    batch = {"rgb": torch.randn(2, 2, 3, 32, 32), "flow": torch.randn(2, 2, 2, 32, 32)}
    out = net(batch, streams=("flow", "hall"))
    total, parts = compute_loss(stage.loss, out, torch.tensor([0, 2]))
    total.backward()
    assert all(p.grad is None for p in net.streams["flow"].parameters())
    assert net.streams["hall"].backbone.conv1.weight.grad.abs().sum() > 0
    # BatchNorm of the frozen teacher stays in eval mode: its running statistics do not move.
    for k, v in net.streams["flow"].state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    distill = [v for k, v in parts.items() if k.startswith(("rel/layer", "rel/temporal", "mars/mse"))]
    assert distill and all(float(v.detach()) > 0 for v in distill)


def test_motion_summary_exact_numbers():
    def rows(variant: str, vals: dict[str, float]) -> list[dict]:
        return [
            {"row": r, "stage": "s", "evaluation": "e", "accuracy": a, "variant": variant, "title": r}
            for r, a in vals.items()
        ]

    per_seed = {
        0: {
            "motion": rows("motion", {"M1": 0.9, "2": 0.5, "M4": 0.6, "M5": 0.7}),
            "motion_none": rows("motion_none", {"M4": 0.5, "M5": 0.6}),
        },
        1: {
            "motion": rows("motion", {"M1": 0.8, "2": 0.4, "M4": 0.7, "M5": 0.6}),
            "motion_none": rows("motion_none", {"M4": 0.4, "M5": 0.65}),
        },
    }
    s = motion_summary(per_seed, {"motion": "motion_none"})
    got = {(r["row"], r["variant"]): r for r in s["rows"]}
    assert [(r["row"], r["variant"]) for r in s["rows"]] == [
        ("M1", ""),
        ("2", ""),
        ("M4", "motion_none"),
        ("M4", "motion"),
        ("M5", "motion_none"),
        ("M5", "motion"),
    ]
    m4 = got[("M4", "motion")]
    assert m4["accuracy"]["mean"] == pytest.approx(0.65) and m4["accuracy"]["std"] == pytest.approx(
        math.sqrt(0.005)
    )
    assert m4["delta_ref"]["values"] == pytest.approx([0.1, 0.3]) and m4["reference"] == "motion_none"
    assert m4["delta_rgb"]["values"] == pytest.approx([0.1, 0.3])
    m5 = got[("M5", "motion")]
    assert m5["delta_ref"]["mean"] == pytest.approx(0.025) and m5["delta_ref"]["std"] == pytest.approx(
        math.sqrt(((0.1 - 0.025) ** 2 + (-0.05 - 0.025) ** 2) / 1)
    )
    assert got[("M4", "motion_none")]["delta_ref"] is None
    assert s["checks"] == {
        "flow_teacher_beats_rgb": True,
        "M4 motion beats motion_none": True,
        "M5 motion beats motion_none": True,
    }
    md = motion_markdown(s)
    assert "| M4 | M4 | motion | RGB | 65.0 ± 7.1 | +20.0 ± 14.1 (motion_none) | +20.0 ± 14.1 |" in md


def test_motion_references():
    assert motion_references(resolve_variants(["motion"])) == {
        "motion_relation": "motion_none",
        "motion_mars": "motion_none",
        "motion_both": "motion_none",
        "motion_mean": "motion_relation",
    }
    assert set(SETS["motion_demo"]) <= set(SETS["motion"])
    # A variant named like a set would be unreachable (sets are resolved first).
    assert not set(VARIANTS) & set(SETS)


@pytest.fixture(scope="module")
def flow_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("motion")
    generate_dataset(tmp / "src", preset="tiny", seed=0, workers=1, subjects=[1, 2, 3])
    assert (
        prepare_cache(tmp / "cache", tmp / "src", options=PrepareOptions(size=32, frames=8)).exit_status == 0
    )
    assert prepare_flow(tmp / "cache", options=FlowOptions(method="dis")).exit_status == 0
    return tmp / "cache"


@pytest.mark.slow
def test_tiny_motion_run_report_and_ablation_table(flow_cache, tmp_path):
    from modistill.apps.motion_demo import run_motion_demo
    from modistill.cli import main
    from modistill.reporting.report import write_report

    out = tmp_path / "run"
    raw = {
        "name": "tiny-motion",
        "out_dir": str(out),
        "data": {"cache": str(flow_cache), "frames": 2},
        "model": {"backbone": "resnet18", "width": 0.125},
        "train": {"epochs": 1, "batch_size": 4, "progress": False, "tensorboard": False},
        "stage_epochs": {"motion_student": 3},
    }
    res = run_motion_demo(out, raw, seeds=[0], variants=("motion_relation", "motion_none"))
    stages = {p.name.rsplit("-", 1)[0]: p for p in (out / "stages").iterdir()}
    n_stages = len(list((out / "stages").iterdir()))
    assert n_stages == 7  # flow, rgb, two-stream, 2 students, 2 finals

    # The frozen flow teacher is bit-identical in the student stage's checkpoint (weights and BN buffers).
    student_dir = next(
        p
        for p in (out / "stages").iterdir()
        if p.name.startswith("motion_student")
        and json.loads((p / "stage.json").read_text())["stage"]["loss"]["kind"] == "relation"
    )
    teacher = load_file(str(stages["motion_flow"] / "checkpoints" / "best.safetensors"))
    student = load_file(str(student_dir / "checkpoints" / "best.safetensors"))
    flow_keys = [k for k in teacher if k.startswith("streams.flow.")]
    assert flow_keys and all(torch.equal(teacher[k], student[k]) for k in flow_keys)
    # The student learns to mimic the teacher's feature relations: the Gram term falls over 3 epochs.
    hist = json.loads((student_dir / "result.json").read_text())["history"]
    rel = [h["parts"]["rel/layer4"] for h in hist]
    assert len(rel) == 3 and rel[-1] < rel[0]

    rows = {(r["row"], r["variant"]) for r in res["summary"]["rows"]}
    assert rows == {
        ("M1", ""),
        ("2", ""),
        ("M3", ""),
        ("M4", "motion_relation"),
        ("M4", "motion_none"),
        ("M5", "motion_relation"),
        ("M5", "motion_none"),
    }
    paths = write_report(
        res["run_root"],
        tmp_path / "report",
        class_names=res["class_names"],
        extra={"sections": {"Motion distillation": res["markdown"]}, "metrics": {"motion": res["summary"]}},
    )
    md = paths["markdown"].read_text()
    assert "## Motion distillation" in md and "(motion_none)" in md and "| M5 |" in md
    assert json.loads(paths["metrics"].read_text())["motion"]["references"] == {
        "motion_relation": "motion_none"
    }

    # `modistill ablation` on the same out_dir reuses every stage and sorts numeric rows before "M" rows.
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(raw | {"recipe": {"name": "motion"}}))
    assert main(["ablation", str(cfg), "--variants", "motion_relation", "motion_none"]) == 0
    assert len(list((out / "stages").iterdir())) == n_stages
    table = (out / "ablation.md").read_text().splitlines()
    order = [line.split("|")[1].strip() for line in table if line.startswith("| ") and "row" not in line]
    assert order == ["2", "M1", "M3", "M4", "M4", "M5", "M5"]
