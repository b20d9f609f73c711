"""The experiment config: everything a `modistill train CONFIG` run needs, as typed dataclasses.

Loaded with :func:`modistill.core.config.load_config` from YAML plus dotted overrides (``train.lr=1e-4``,
``recipe.step3_loss=gd``); the resolved config is saved in the run directory and in every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from modistill.data.splits import SplitRule
from modistill.engine.config import TrainConfig

from .depth import DepthRecipeConfig, depth_recipe
from .motion import MotionRecipeConfig, motion_recipe
from .stages import Stage

__all__ = ["DataConfig", "ExperimentConfig", "ModelConfig", "RecipeConfig", "build_recipe"]

#: the recipe section of an experiment: a tagged union on ``name`` (garcia | hoffman -> depth, motion -> motion)
RecipeConfig = DepthRecipeConfig | MotionRecipeConfig
#: the modalities a stream can read (batch keys), for ``model.pretrained`` given per modality
MODALITIES = ("rgb", "depth", "flow")


@dataclass
class DataConfig:
    """Where the prepared cache is, how it is split, and how clips are drawn from it.

    cache: a folder written by ``modistill prepare`` (its index gives labels, subjects, cameras, splits).
    protocol: how train / val / test are made (`modistill.data.splits`; docs/own_data.md): NTU's ``xsub``,
        ``xview``, ``xsub120``, ``xset120`` (REF §4; on non-NTU caches applied to the records' subject / camera /
        setup fields, not to sample names); ``manifest``: the records' ``split`` column (train / val / test);
        ``subjects`` / ``views``: held-out subjects or views.
    test_subjects / test_views: the held-out ids of ``subjects`` / ``views``; test_fraction: a seeded fraction
        of all subjects (or views) instead of a list.
    val_subjects: validation subjects (from the training side); val_fraction: seeded fraction of the training
        subjects held out for validation (null: 10 %; 0: no validation, the last epoch is kept). Neither applies
        to the NTU protocols (the paper's rule) nor when the records name a ``val`` split.
    split_seed: seed of the test and validation draws (independent of ``train.seed``, so seeds share a split).
    on_missing: ``error`` (default) or ``skip`` for samples of the source that are not in the cache (failed in
        ``prepare``: listed in ``<cache>/failures.jsonl``).
    frames: K sampled frames per clip (paper: 5).
    clips_per_video: temporal clips averaged at evaluation (the paper uses one).
    """

    cache: str = ""
    protocol: Literal["xsub", "xview", "xsub120", "xset120", "manifest", "subjects", "views"] = "xsub"
    test_subjects: list[int | str] = field(default_factory=list)
    test_views: list[int | str] = field(default_factory=list)
    test_fraction: float = 0.0
    val_subjects: list[int | str] = field(default_factory=list)
    val_fraction: float | None = None
    split_seed: int = 0
    on_missing: Literal["error", "skip"] = "error"
    frames: int = 5
    clips_per_video: int = 1

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {self.clips_per_video}")
        self.split_rule()  # the split settings are checked where they are defined (data/splits.py)

    def split_rule(self) -> SplitRule:
        """The `SplitRule` these settings describe."""
        return SplitRule(
            protocol=self.protocol,
            test_subjects=tuple(self.test_subjects),
            test_views=tuple(self.test_views),
            test_fraction=self.test_fraction,
            val_subjects=tuple(self.val_subjects),
            val_fraction=self.val_fraction,
            seed=self.split_seed,
        )


@dataclass
class ModelConfig:
    """The backbone shared by every stream (streams that are connected need equal shapes).

    pretrained: a local ImageNet checkpoint (torchvision or timm naming, .pth or .safetensors) loaded into every
        stream whose init is ``pretrained``; or a mapping modality -> checkpoint (``{rgb: a.safetensors, depth:
        b.safetensors}``, e.g. the per-modality trunks of ``modistill pretrain``), a modality it does not name
        starting from scratch; ``None`` trains those from scratch (nothing is downloaded).
    """

    backbone: Literal["resnet18", "resnet34", "resnet50"] = "resnet50"
    width: float = 1.0
    temporal: bool = True
    pretrained: str | dict[str, str] | None = None
    channels_last: bool = True

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if isinstance(self.pretrained, dict):
            bad = sorted(set(self.pretrained) - set(MODALITIES))
            if bad:
                raise ValueError(f"pretrained: unknown modality key(s) {bad}; use {list(MODALITIES)}")

    def pretrained_for(self, modality: str) -> str | None:
        """The checkpoint a ``pretrained`` stream reading ``modality`` starts from (None: from scratch)."""
        if isinstance(self.pretrained, dict):
            return self.pretrained.get(modality)
        return self.pretrained


@dataclass
class ExperimentConfig:
    """A whole run: data, model, recipe and training settings.

    stage_epochs: per-stage epoch counts overriding ``train.epochs`` (e.g. ``{step4: 3}``).
    stage_lr: per-stage learning rates overriding ``train.lr``.
    out_dir: the run folder (config.yaml, results.json, robustness.json, report).
    stage_root: where trained stages live (default ``<out_dir>/stages``); runs that share it (ablation variants,
        seeds of the demo) reuse each other's identical stages.
    """

    name: str = "experiment"
    out_dir: str = "runs"
    stage_root: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    recipe: DepthRecipeConfig | MotionRecipeConfig = field(default_factory=DepthRecipeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stage_epochs: dict[str, int] = field(default_factory=dict)
    stage_lr: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k, v in self.stage_epochs.items():
            if v < 0:
                raise ValueError(f"stage_epochs.{k} must be >= 0, got {v}")
        for k, v in self.stage_lr.items():
            if not v > 0:
                raise ValueError(f"stage_lr.{k} must be > 0, got {v}")


def build_recipe(cfg: DepthRecipeConfig | MotionRecipeConfig) -> list[Stage]:
    """The ordered stages a recipe config describes."""
    if isinstance(cfg, MotionRecipeConfig):
        return motion_recipe(cfg)
    return depth_recipe(cfg)
