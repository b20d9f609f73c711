"""Recipe structure and config errors, without training: the four steps of Garcia et al. 2018 §3.2 (REF §3) as
stages, every Table 2 variant, the Hoffman baseline, `validate_recipe`'s rejections, and config errors that
name the file / override and the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from modistill.cli import main as cli_main
from modistill.core.config import ConfigError
from modistill.pipeline.runner import run_recipe
from modistill.pipeline.session import load_experiment
from modistill.recipes import DepthRecipeConfig, build_recipe, hoffman_recipe
from modistill.recipes.ablation import SETS, VARIANTS, resolve_variants, variant_config
from modistill.recipes.stages import Evaluation, StreamPlan, validate_recipe


def _garcia(**kw) -> dict:
    return {s.name: s for s in build_recipe(DepthRecipeConfig(**kw))}


# --- the paper's four steps -----------------------------------------------------------------------------
def test_garcia_steps_follow_the_paper():
    r = _garcia()
    assert list(r) == ["step1_rgb", "step1_depth", "step2", "step3", "step4"]
    # Step 1: each stream alone, cross-entropy on its own logits.
    assert [(s.name, s.modality, s.frozen) for s in r["step1_rgb"].streams] == [("rgb", "rgb", False)]
    assert [(s.name, s.modality, s.frozen) for s in r["step1_depth"].streams] == [("depth", "depth", False)]
    assert (r["step1_rgb"].loss.kind, r["step1_rgb"].loss.classify) == ("ce", "rgb")
    # Step 2: both streams from step 1, depth -> rgb connections at all four stages, CE on the fused logits.
    s2 = r["step2"]
    assert {s.name: s.init for s in s2.streams} == {"rgb": "step1_rgb/rgb", "depth": "step1_depth/depth"}
    assert [(c.source, c.target, c.stages, c.variant) for c in s2.connections] == [
        ("depth", "rgb", (1, 2, 3, 4), "paper")
    ]
    assert s2.loss.classify_target() == "fused" and s2.frozen == ()
    assert set(s2.inputs) == {"rgb", "depth"}
    # Step 3: depth frozen from step 2, hall (reads rgb) initialised from the step-2 depth, eq. 7,
    # depth -> hall, evaluated on RGB alone.
    s3 = r["step3"]
    assert {s.name: (s.modality, s.init, s.frozen) for s in s3.streams} == {
        "depth": ("depth", "step2/depth", True),
        "hall": ("rgb", "step2/depth", False),
    }
    assert (s3.loss.kind, s3.loss.student, s3.loss.teacher) == ("eq7", "hall", "depth")
    assert (s3.loss.alpha, s3.loss.lam, s3.loss.T) == (0.5, 0.5, 10.0)
    assert [(c.source, c.target) for c in s3.connections] == [("depth", "hall")]
    # Selected (and reported as row 13) in the graph it trains in: depth injected, the hall stream's logits;
    # the hall stream alone on RGB is reported as 13-strict.
    assert s3.evaluate.streams == ("depth", "hall") and s3.evaluate.inputs == ("rgb", "depth")
    assert s3.evaluate.output == "hall"
    assert [(e.streams, e.inputs, e.paper_row) for e in s3.extra] == [(("hall",), ("rgb",), "13-strict")]
    # Step 4: rgb from step 2, hall from step 3, hall -> rgb, fine-tuned on RGB only (the deployed model).
    s4 = r["step4"]
    assert {s.name: s.init for s in s4.streams} == {"rgb": "step2/rgb", "hall": "step3/hall"}
    assert [(c.source, c.target) for c in s4.connections] == [("hall", "rgb")]
    assert s4.inputs == ("rgb",) and s4.evaluate.inputs == ("rgb",) and s4.frozen == ()
    assert [(e.paper_row, e.weights) for e in s4.extra] == [("13-init", "init")]
    assert [s.paper_row for s in r.values()] == ["2", "1", "8", "13", "15"]


def test_recipe_knobs_change_the_stages():
    assert _garcia(connections=False)["step2"].connections == ()
    assert _garcia(connections=False)["step4"].connections == ()
    assert _garcia(step3_connections=False)["step3"].connections == ()
    inv = _garcia(direction="rgb_to_depth")
    assert [(c.source, c.target) for c in inv["step2"].connections] == [("rgb", "depth")]
    assert _garcia(variant="released")["step2"].connections[0].variant == "released"
    assert _garcia(conn_stages=[3, 4])["step2"].connections[0].stages == (3, 4)
    assert _garcia(step3_loss="gd")["step3"].loss.kind == "gd"
    with pytest.raises(ValueError, match="conn_stages"):
        DepthRecipeConfig(conn_stages=[5])


# --- Table 2 variants -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_ablation_variant_builds_a_valid_recipe(name, tmp_path):
    v = VARIANTS[name]
    exp = variant_config(load_experiment({"out_dir": str(tmp_path)}), v)
    stages = build_recipe(exp.recipe)
    validate_recipe(stages)
    names = [s.name for s in stages]
    if v.stages is not None:
        assert set(v.stages) <= set(names), (v.stages, names)
        run = [s for s in stages if s.name in v.stages]
    else:
        run = stages
    # The rows the variant promises are produced by the evaluations of the stages it runs.
    produced = {ev.paper_row for s in run for ev in (s.evaluate, *s.extra)}
    assert set(v.rows) <= produced, (name, v.rows, produced)


def test_ablation_variant_overrides_are_what_they_say():
    base = load_experiment({})
    get = {n: variant_config(base, VARIANTS[n]).recipe for n in VARIANTS}
    assert get["step2_no_connections"].connections is False
    assert (
        get["step3_eq3_no_connections"].step3_loss,
        get["step3_eq3_no_connections"].step3_connections,
    ) == ("hall", False)
    assert get["hoffman_gd"].name == "hoffman" and get["hoffman_gd"].hoffman_loss == "gd"
    assert get["released"].hall_layers == {"layer4": 0.01} and get["released"].hall_reduction == "sum"
    assert (get["released"].step3_connections, get["released"].step4_connections) == (False, False)
    assert base.recipe == DepthRecipeConfig()  # variant_config copies; the base is untouched
    assert [v.name for v in resolve_variants(["losses", "paper"])] == list(SETS["losses"])
    with pytest.raises(ValueError, match="unknown ablation variant"):
        resolve_variants(["step9"])


@pytest.mark.parametrize("loss,row", [("hall", "3"), ("gd", "4"), ("eq7", "5")])
def test_hoffman_recipe(loss, row):
    stages = hoffman_recipe(DepthRecipeConfig(name="hoffman", hoffman_loss=loss))
    assert [s.name for s in stages] == ["step1_rgb", "step1_depth", f"hoffman_{loss}"]
    st = stages[-1]
    # Initialised from step 1, the hallucination stream from the depth network (Garcia et al. §4.2).
    assert [(s.name, s.modality, s.init, s.frozen) for s in st.streams] == [
        ("rgb", "rgb", "step1_rgb/rgb", False),
        ("depth", "depth", "step1_depth/depth", False),
        ("hall", "rgb", "step1_depth/depth", False),
    ]
    assert st.trainable == ("rgb", "depth", "hall") and st.connections == ()
    ce = ("rgb", "depth", "hall") if loss == "hall" else ("rgb", "depth")
    assert (st.loss.kind, st.loss.hoffman_distill, st.loss.hoffman_ce) == ("hoffman", loss, ce)
    assert (st.loss.student, st.loss.teacher) == ("hall", "depth")
    assert st.evaluate.streams == ("rgb", "hall") and st.evaluate.inputs == ("rgb",)
    assert st.fuse == ("rgb", "hall") and st.paper_row == row == st.evaluate.paper_row
    assert build_recipe(DepthRecipeConfig(name="hoffman", hoffman_loss=loss)) == stages


# --- validate_recipe rejections ---------------------------------------------------------------------------
def _replace_stream(stage, name, **kw):
    return dataclasses.replace(
        stage, streams=tuple(dataclasses.replace(s, **kw) if s.name == name else s for s in stage.streams)
    )


def test_validate_rejects_weights_from_a_later_stage():
    r = list(_garcia().values())
    bad = _replace_stream(r[2], "rgb", init="step4/rgb")  # step2 reading step4
    with pytest.raises(ValueError, match=r"stage 'step2'.*'step4/rgb'.*does not come earlier"):
        validate_recipe([*r[:2], bad, *r[3:]])
    with pytest.raises(ValueError, match="does not come earlier"):  # order matters, not just presence
        validate_recipe([r[3], *r[:3], r[4]])
    with pytest.raises(KeyError, match="no stream 'hall'"):  # an earlier stage without that stream
        validate_recipe([*r[:2], _replace_stream(r[2], "rgb", init="step1_depth/hall"), *r[3:]])
    with pytest.raises(ValueError, match="must be 'scratch', 'pretrained' or '<stage>/<stream>'"):
        validate_recipe([_replace_stream(r[0], "rgb", init="step1_depth")])


def test_validate_rejects_a_trainable_stream_the_loss_does_not_reach():
    r = _garcia(step3_connections=False)
    # Without connections nothing trains the (detached) eq. 7 teacher: leaving it unfrozen is an error.
    s3 = _replace_stream(r["step3"], "depth", frozen=False)
    with pytest.raises(ValueError, match=r"trainable streams \['depth'\] get no gradient"):
        validate_recipe([r["step1_rgb"], r["step1_depth"], r["step2"], s3])
    # With depth -> hall connections the product does carry a gradient into depth: accepted.
    r2 = _garcia()
    validate_recipe(
        [r2["step1_rgb"], r2["step1_depth"], r2["step2"], _replace_stream(r2["step3"], "depth", frozen=False)]
    )
    # A CE on one stream of a two-stream stage leaves the other idle.
    s2 = dataclasses.replace(
        r["step2"], loss=dataclasses.replace(r["step2"].loss, classify="depth"), connections=()
    )
    with pytest.raises(ValueError, match=r"trainable streams \['rgb'\]"):
        validate_recipe([r["step1_rgb"], r["step1_depth"], s2])


def test_validate_rejects_bad_evaluations_and_inputs():
    r = _garcia()
    s2 = r["step2"]
    bad = dataclasses.replace(s2, extra=(Evaluation("x", streams=("hall",), inputs=("rgb",)),))
    with pytest.raises(ValueError, match=r"evaluation 'x' names unknown streams \['hall'\]"):
        validate_recipe([r["step1_rgb"], r["step1_depth"], bad])
    bad = dataclasses.replace(s2, evaluate=Evaluation("y", streams=("rgb", "depth"), inputs=("rgb",)))
    with pytest.raises(ValueError, match=r"evaluation 'y' runs streams that read \['depth'\]"):
        validate_recipe([r["step1_rgb"], r["step1_depth"], bad])
    bad = dataclasses.replace(s2, inputs=("rgb",))
    with pytest.raises(ValueError, match=r"streams read \['depth'\], which are not among inputs"):
        validate_recipe([r["step1_rgb"], r["step1_depth"], bad])
    with pytest.raises(ValueError, match="duplicate stage name"):
        validate_recipe([r["step1_rgb"], r["step1_rgb"]])
    dup = dataclasses.replace(r["step1_rgb"], streams=(StreamPlan("rgb", "rgb"), StreamPlan("rgb", "rgb")))
    with pytest.raises(ValueError, match="distinct"):
        validate_recipe([dup])


def test_run_recipe_refuses_a_stage_whose_inputs_are_not_trained(tmp_path):
    exp = load_experiment({"out_dir": str(tmp_path)})

    def no_data(*a):
        raise AssertionError("no dataset should be built")

    with pytest.raises(RuntimeError, match=r"stage 'step3' needs \['step2'\] first"):
        run_recipe(exp, no_data, 3, only=["step3"])
    with pytest.raises(ValueError, match="unknown stages"):
        run_recipe(exp, no_data, 3, only=["step5"])


# --- config errors ----------------------------------------------------------------------------------------
def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


def test_unknown_yaml_key_names_file_key_and_suggestion(tmp_path):
    p = _yaml(tmp_path, "train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(p)
    msg = str(e.value)
    assert str(p) in msg and "train.epoch" in msg and "did you mean 'epochs'" in msg
    p = _yaml(tmp_path, "recipe:\n  step3_los: gd\n")
    with pytest.raises(ConfigError, match=r"recipe\.step3_los: unknown key \(did you mean 'step3_loss'\?\)"):
        load_experiment(p)


def test_wrong_type_and_bad_literal_are_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"exp\.yaml: train\.lr: expected float, got str 'fast'"):
        load_experiment(_yaml(tmp_path, "train:\n  lr: fast\n"))
    with pytest.raises(ConfigError, match=r"recipe\.connections: expected bool"):
        load_experiment(_yaml(tmp_path, "recipe:\n  connections: 1\n"))
    with pytest.raises(ConfigError) as e:
        load_experiment({}, ["recipe.step3_loss=eq9"])
    msg = str(e.value)
    assert "override 'recipe.step3_loss=eq9'" in msg and "recipe.step3_loss" in msg
    assert "'hall', 'gd', 'eq7'" in msg and "did you mean 'eq7'" in msg
    with pytest.raises(ConfigError, match=r"recipe\.alpha.*alpha must be in \[0, 1\]"):
        load_experiment({}, ["recipe.alpha=1.5"])
    with pytest.raises(ConfigError, match=r"data\.frames"):
        load_experiment({"data": {"frames": 0}})


def test_train_command_bad_override_exits_2(tmp_path, capsys):
    p = _yaml(tmp_path, f"out_dir: {tmp_path / 'run'}\n")
    assert cli_main(["train", str(p), "recipe.step3_loss=eq9"]) == 2
    err = capsys.readouterr().err
    assert "modistill: error:" in err and "recipe.step3_loss" in err and "eq9" in err
    p = _yaml(tmp_path, "trian:\n  epochs: 1\n")
    assert cli_main(["train", str(p)]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "trian" in err and "did you mean 'train'" in err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_train_dry_run_lists_the_stages(tmp_path, capsys):
    p = _yaml(tmp_path, f"out_dir: {tmp_path / 'run'}\n")
    assert cli_main(["train", str(p), "recipe.step3_connections=false", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "step3_connections: false" in out
    assert "- step3:" in out and "frozen ['depth']" in out


def test_train_overrides_after_an_option_are_accepted(tmp_path, capsys):
    p = _yaml(tmp_path, f"out_dir: {tmp_path / 'run'}\n")
    assert cli_main(["train", str(p), "--dry-run", "recipe.step3_connections=false"]) == 0
    assert "step3_connections: false" in capsys.readouterr().out


def test_train_rejects_stray_arguments_after_an_option(tmp_path):
    p = _yaml(tmp_path, f"out_dir: {tmp_path / 'run'}\n")
    with pytest.raises(SystemExit) as exc:
        cli_main(["train", str(p), "--dry-run", "not-an-override"])
    assert exc.value.code == 2


def test_every_table2_row_comes_from_one_variant_whose_recipe_labels_it():
    """The paper's table (core.paper) is the one list of rows: the ablation variants cover every row, and each
    variant's recipe labels an evaluation with each row the variant claims to produce."""
    from modistill.core.config import apply_overrides
    from modistill.core.paper import SUPPLEMENT_TABLE1, TABLE2
    from modistill.recipes import ExperimentConfig
    from modistill.recipes.ablation import SETS, VARIANTS

    covered = {r for v in SETS["table2"] for r in VARIANTS[v].rows}
    assert covered >= set(TABLE2) | set(SUPPLEMENT_TABLE1)
    for name in SETS["all"]:
        v = VARIANTS[name]
        exp = apply_overrides(ExperimentConfig(), list(v.overrides))
        labels = {ev.paper_row for st in build_recipe(exp.recipe) for ev in (st.evaluate, *st.extra)}
        assert set(v.rows) <= labels, (name, v.rows, labels)


def test_stage_keys_ignore_labels_but_not_what_trains():
    """Relabelling a stage (title, paper row, extra evaluations) keeps its key; changing what it computes or
    its input channels (the motion recipe's flow stack) does not."""
    import dataclasses

    from modistill.core.config import apply_overrides
    from modistill.pipeline.runner import stage_key
    from modistill.recipes import ExperimentConfig

    exp = ExperimentConfig()
    st = _garcia()["step2"]
    k = stage_key(exp, st, {})
    relabelled = dataclasses.replace(st, title="x", paper_row="99", extra=())
    assert stage_key(exp, relabelled, {}) == k
    assert stage_key(exp, dataclasses.replace(st, inputs=("rgb",)), {}) != k
    motion = apply_overrides(exp, ["recipe.name=motion"])
    flow = {s.name: s for s in build_recipe(motion.recipe)}["motion_flow"]
    assert stage_key(motion, flow, {}) != stage_key(apply_overrides(motion, ["recipe.flow_stack=2"]), flow, {})
