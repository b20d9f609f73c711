"""The experiment config: everything a `modistill train CONFIG` run needs, as typed dataclasses.

Loaded with :func:`modistill.core.config.load_config` from YAML plus dotted overrides (``train.lr=1e-4``,
``recipe.step3_loss=gd``); the resolved config is saved in the run directory and in every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    """Where the prepared cache is and how clips are drawn from it.

    cache: a folder written by ``modistill prepare`` (its index gives labels, subjects, cameras).
    protocol: NTU protocol for the train/val/test split (REF §4): ``xsub``, ``xview``, ``xsub120``, ``xset120``.
    frames: K sampled frames per clip (paper: 5).
    clips_per_video: temporal clips averaged at evaluation (the paper uses one).
    """

    cache: str = ""
    protocol: Literal["xsub", "xview", "xsub120", "xset120"] = "xsub"
    frames: int = 5
    clips_per_video: int = 1

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {self.clips_per_video}")


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
