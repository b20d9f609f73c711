"""What trains, as pure data: typed recipe configs and the ordered stages they describe (no I/O here).

    stages.py      Stage / StreamPlan / Evaluation types, validation, the shared step-1 stage
    depth.py       DepthRecipeConfig; the paper's four steps (garcia_recipe) and the Hoffman baseline
    motion.py      MotionRecipeConfig; the motion-distillation recipe (our reconstruction)
    experiment.py  ExperimentConfig (recipe: a tagged union on ``name``) and build_recipe
    ablation.py    the paper's ablation rows as named variants of a base config
"""

from .depth import DepthRecipeConfig, depth_recipe, garcia_recipe, hoffman_recipe
from .experiment import DataConfig, ExperimentConfig, ModelConfig, RecipeConfig, build_recipe
from .motion import MotionRecipeConfig, motion_recipe
from .stages import Evaluation, Stage, StreamPlan

__all__ = [
    "DataConfig",
    "DepthRecipeConfig",
    "Evaluation",
    "ExperimentConfig",
    "ModelConfig",
    "MotionRecipeConfig",
    "RecipeConfig",
    "Stage",
    "StreamPlan",
    "build_recipe",
    "depth_recipe",
    "garcia_recipe",
    "hoffman_recipe",
    "motion_recipe",
]
