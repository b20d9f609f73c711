"""Typed config system: YAML + dotted overrides -> nested dataclasses (modistill.core.config)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from modistill.core.config import (
    ConfigError,
    apply_overrides,
    config_hash,
    dump_yaml,
    load_config,
    parse_override,
    to_dict,
    to_yaml,
)
from modistill.distill import LossSpec


@dataclass
class Train:
    lr: float = 1e-3
    epochs: int = 10
    optimizer: Literal["adam", "sgd"] = "adam"
    milestones: list[int] = field(default_factory=list)
    betas: tuple[float, float] = (0.9, 0.999)
    out_dir: Path = Path("runs")
    resume: Path | None = None
    amp: bool = False

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class Model:
    backbone: str = "resnet18"
    width: float = 1.0
    layers: tuple[str, ...] = ("layer4",)


@dataclass
class Stage:
    streams: list[str] = field(default_factory=lambda: ["rgb"])
    epochs: int = 1
    loss: LossSpec = field(default_factory=LossSpec)


def _default_stages() -> dict[str, Stage]:
    return {"step1": Stage(), "step3": Stage(streams=["hall", "depth"], loss=LossSpec(kind="eq7"))}


@dataclass
class Experiment:
    name: str = "exp"
    train: Train = field(default_factory=Train)
    model: Model = field(default_factory=Model)
    stages: dict[str, Stage] = field(default_factory=_default_stages)
    seed: int | None = None
    extra: Optional[Model] = None  # noqa: UP045 - typing.Optional must work too
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class NeedsName:
    name: str
    size: int = 1


def _write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _err(cls, source=None, overrides=()) -> str:
    with pytest.raises(ConfigError) as ei:
        load_config(cls, source, overrides)
    return str(ei.value)


# ------------------------------------------------------------------------------------------- loading
def test_defaults_and_partial_yaml(tmp_path):
    assert load_config(Experiment) == Experiment()
    p = _write(
        tmp_path,
        "train:\n  lr: 1e-4\n  betas: [0.5, 1]\n  out_dir: out/a\nmodel:\n  width: 1\n"
        "stages:\n  only:\n    epochs: 3\n    loss: {kind: gd, T: 4}\nseed: 010\n",
    )
    cfg = load_config(Experiment, p)
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)  # YAML 1.2: 1e-4 is a float
    assert cfg.train.betas == (0.5, 1.0) and cfg.train.out_dir == Path("out/a")
    assert cfg.train.epochs == 10  # untouched keys keep their defaults
    assert cfg.model.width == 1.0 and isinstance(cfg.model.width, float)  # int accepted for float
    assert list(cfg.stages) == ["only"]  # a dict value replaces the default dict
    assert cfg.stages["only"].loss == LossSpec(kind="gd", T=4.0)
    assert cfg.seed == 10  # YAML 1.2: no octal surprise


def test_dict_and_instance_sources():
    cfg = load_config(Experiment, {"train": {"epochs": 2}})
    assert cfg.train.epochs == 2
    again = load_config(Experiment, cfg, ["train.epochs=5"])
    assert again.train.epochs == 5 and cfg.train.epochs == 2  # the input is not mutated


# ------------------------------------------------------------------------------------------- round trip
def test_round_trip_yaml_dict_and_hash(tmp_path):
    cfg = load_config(
        Experiment,
        {
            "name": "1e-3",  # strings that look like other YAML types must stay strings
            "tags": {"a": "yes", "b": "null", "c": "010", "d": "true", "e": "1.5"},
            "train": {"resume": "ckpt/last.safetensors", "milestones": [3, 6], "lr": 2.5e-5},
            "model": {"width": math.inf, "layers": ["layer3", "layer4"]},
            "extra": {"backbone": "resnet50"},
            "seed": None,
        },
    )
    path = dump_yaml(cfg, tmp_path / "sub" / "cfg.yaml")
    back = load_config(Experiment, path)
    assert back == cfg
    assert to_dict(back) == to_dict(cfg)
    assert config_hash(back) == config_hash(cfg) and len(config_hash(cfg)) == 12
    assert config_hash(apply_overrides(cfg, ["train.lr=1e-5"])) != config_hash(cfg)
    d = to_dict(cfg)
    assert d["model"]["layers"] == ["layer3", "layer4"] and d["train"]["resume"] == "ckpt/last.safetensors"
    text = to_yaml(cfg)
    assert "'1e-3'" in text  # quoted, or it would read back as a float
    assert "'yes'" in text  # quoted too, for YAML 1.1 readers (where yes is a bool)


# ------------------------------------------------------------------------------------------- overrides
def test_nested_list_dict_and_optional_overrides():
    cfg = load_config(
        Experiment,
        None,
        [
            "train.lr=1e-4",
            "model.width=0.5",
            "stages.step3.loss.alpha=0.7",
            "train.milestones=[3, 6]",
            "train.milestones.1=7",
            "stages.step4.epochs=3",
            "stages.step4.loss.kind=ce",
            "tags.run=baseline",
            "seed=3",
            "extra.width=0.25",
            "model.layers=[layer3, layer4]",
        ],
    )
    assert cfg.train.lr == 1e-4 and cfg.model.width == 0.5
    assert cfg.stages["step3"].loss.alpha == 0.7 and cfg.stages["step3"].loss.kind == "eq7"
    assert set(cfg.stages) == {"step1", "step3", "step4"}  # editing one entry keeps the others
    assert cfg.stages["step4"] == Stage(epochs=3)
    assert cfg.train.milestones == [3, 7]
    assert cfg.tags == {"run": "baseline"} and cfg.seed == 3
    assert cfg.extra == Model(width=0.25)  # a null Optional section is created from its defaults
    assert cfg.model.layers == ("layer3", "layer4")
    assert load_config(Experiment, {"seed": 4}, ["seed=null"]).seed is None
    assert parse_override("a.b=") == ("a.b", None)
    assert parse_override("x={k: 1e-3}") == ("x", {"k": 1e-3})


def test_override_errors_name_the_override():
    assert _err(Experiment, None, ["train.lrr=1e-4"]) == (
        "override 'train.lrr=1e-4': train.lrr: unknown key (did you mean 'lr'?)"
    )
    msg = _err(Experiment, None, ["train.epochs=2", "stages.step3.loss.alpha=7"])
    assert msg.startswith("override 'stages.step3.loss.alpha=7': stages.step3.loss.alpha: ")
    assert "alpha must be in [0, 1]" in msg
    assert "expected KEY=VALUE" in _err(Experiment, None, ["train.lr"])
    assert "not a mapping" in _err(Experiment, None, ["train.lr.x=1"])
    assert "not an index" in _err(Experiment, None, ["train.betas.5=1"])
    assert "cannot parse" in _err(Experiment, None, ["train.milestones=[1, 2"])


# ------------------------------------------------------------------------------------------- file errors
def test_unknown_key_with_suggestion_names_file(tmp_path):
    p = _write(tmp_path, "train:\n  lrr: 0.1\n")
    assert _err(Experiment, p) == f"{p}: train.lrr: unknown key (did you mean 'lr'?)"
    p = _write(tmp_path, "stages:\n  s1:\n    loss:\n      alpah: 0.3\n")
    assert _err(Experiment, p) == f"{p}: stages.s1.loss.alpah: unknown key (did you mean 'alpha'?)"
    p = _write(tmp_path, "zzz: 1\n")
    assert "zzz: unknown key (valid keys: name, train, model" in _err(Experiment, p)


@pytest.mark.parametrize(
    "text,key,fragment",
    [
        ("train:\n  epochs: '5'\n", "train.epochs", "expected int, got str '5'"),  # no silent str -> int
        ("train:\n  epochs: 5.0\n", "train.epochs", "expected int, got float 5.0"),
        ("train:\n  amp: yes\n", "train.amp", "use true or false"),  # YAML 1.2: yes is a string
        ("train:\n  lr: abc\n", "train.lr", "expected float, got str 'abc'"),
        ("train:\n  lr: true\n", "train.lr", "expected float, got bool True"),
        ("name: 123\n", "name", "expected str, got int 123"),
        ("train:\n  betas: [0.9]\n", "train.betas", "expected a list of 2 items, got 1"),
        ("train:\n  milestones: [1, a]\n", "train.milestones.1", "expected int"),
        ("train:\n  milestones: 3\n", "train.milestones", "expected a list"),
        ("train: 3\n", "train", "expected a mapping for Train"),
        ("model:\n  width: null\n", "model.width", "expected float, got null"),
        ("tags:\n  k: 1\n", "tags.k", "expected str"),
        ("train:\n  optimizer: adamw\n", "train.optimizer", "expected one of 'adam', 'sgd'"),
        ("stages:\n  s:\n    loss:\n      kind: eq8\n", "stages.s.loss.kind", "(did you mean 'eq7'?)"),
        ("train:\n  lr: -1\n", "train.lr", "invalid Train: lr must be > 0, got -1.0"),
    ],
)
def test_wrong_types_literals_and_validation(tmp_path, text, key, fragment):
    p = _write(tmp_path, text)
    msg = _err(Experiment, p)
    assert msg.startswith(f"{p}: {key}: "), msg
    assert fragment in msg, msg


def test_optional_none_and_required_keys(tmp_path):
    cfg = load_config(Experiment, _write(tmp_path, "extra: null\ntrain:\n  resume: null\n"))
    assert cfg.extra is None and cfg.train.resume is None
    assert _err(NeedsName, {"size": 2}) == "name: missing required key"
    assert load_config(NeedsName, {"name": "a"}) == NeedsName("a")


def test_bad_yaml_files(tmp_path):
    p = _write(tmp_path, "train:\n  lr: 0.1\n  lr: 0.2\n")
    msg = _err(Experiment, p)
    assert msg.startswith(f"{p}: invalid YAML") and "duplicate key 'lr'" in msg
    p = _write(tmp_path, "train: [1, 2\n")
    assert _err(Experiment, p).startswith(f"{p}: invalid YAML")
    p = _write(tmp_path, "- 1\n- 2\n")
    assert "top level must be a mapping" in _err(Experiment, p)
    assert _err(Experiment, tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: config file not found"
    assert load_config(Experiment, _write(tmp_path, "")) == Experiment()  # an empty file = all defaults
    with pytest.raises(TypeError, match="dataclass"):
        load_config(dict, None)  # type: ignore[arg-type]


# --- the recipe section: a tagged union on `name` ---------------------------------------------------------
def test_recipe_is_a_tagged_union_switched_by_name(tmp_path):
    from modistill.recipes import DepthRecipeConfig, ExperimentConfig, MotionRecipeConfig

    base = load_config(ExperimentConfig)
    assert isinstance(base.recipe, DepthRecipeConfig)
    motion = apply_overrides(base, ["recipe.name=motion", "recipe.motion_loss=mars"])
    assert isinstance(motion.recipe, MotionRecipeConfig) and motion.recipe.motion_loss == "mars"
    # the resolved config round-trips through YAML with its member
    dump_yaml(motion, tmp_path / "c.yaml")
    assert load_config(ExperimentConfig, tmp_path / "c.yaml") == motion
    back = apply_overrides(apply_overrides(base, ["recipe.name=motion"]), ["recipe.name=hoffman"])
    assert isinstance(back.recipe, DepthRecipeConfig) and back.recipe.name == "hoffman"
    # a setting that only the motion recipe reads is not silently dropped when switching away from it
    with pytest.raises(ConfigError, match=r"recipe\.motion_loss: is a setting of the 'motion' recipe"):
        apply_overrides(motion, ["recipe.name=hoffman"])


def test_recipe_union_refuses_another_members_setting_and_unknown_names(tmp_path):
    from modistill.recipes import ExperimentConfig

    f = tmp_path / "m.yaml"
    f.write_text("recipe:\n  name: motion\n  alpha: 0.7\n")
    with pytest.raises(ConfigError, match=r"recipe\.alpha: is a setting of the 'garcia/hoffman' recipe"):
        load_config(ExperimentConfig, f)
    with pytest.raises(ConfigError, match=r"recipe\.name: expected one of 'garcia', 'hoffman', 'motion'.*"
                                          r"did you mean 'motion'"):
        load_config(ExperimentConfig, None, ["recipe.name=motoin"])
    with pytest.raises(ConfigError, match=r"recipe\.step3_los: unknown key"):
        load_config(ExperimentConfig, None, ["recipe.step3_los=gd"])
