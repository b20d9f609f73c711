"""The motion-distillation recipe (flow as the privileged modality), as an ordered list of stages.

OUR RECONSTRUCTION of Lu et al., ICONIP 2020 (known only from its abstract; REF §6), built in the same staged
mechanism as the depth method (depth.py) and compared with MARS (Crasto et al., CVPR 2019) and two-stream
networks:

    motion_flow          flow stream alone (2L input channels), CE: the flow teacher             row M1
    step1_rgb            RGB stream alone, CE: the RGB-only baseline. The very stage of the      row 2
                         depth recipe (same definition, so same key: shared when both methods
                         run on one stage_root)
    motion_two_stream    baseline: RGB (step1_rgb) + flow (motion_flow) streams, late fusion     row M3
                         (mean of logits), fine-tuned jointly with CE on the fused logits;
                         needs flow at test time (like Garcia's step 2 without connections)
    motion_student       the flow teacher FROZEN (no gradient, BatchNorm in eval mode); a        row M4
                         motion-mimicking stream "hall" reading RGB, trained with the relation
                         (Gram) loss + CE, MARS (CE + 50 MSE of pooled features), both, or CE
                         only (the no-distillation control); evaluated on RGB alone
    motion_final         RGB stream (step1_rgb) + student (motion_student), fused by the         row M5
                         attention module (or the mean of logits), fine-tuned on RGB only:
                         the deployed RGB-only model

The student starts from the RGB stage's weights by default (``motion_init="rgb"``): unlike the depth
method's hallucination stream, it cannot start from the teacher, whose first convolution reads 2L flow
channels instead of 3 colours; MARS likewise starts its student from RGB weights. ``motion_init="scratch"``
is the alternative. The control (``motion_loss="none"``) trains the same student from the same weights with
the same data order and epochs, with CE only: the difference between a distilled student and the control
(and between their fused models) is the measured effect of the distillation, not the ensemble effect of
fusing two RGB networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from modistill.distill.terms import LossSpec

from .stages import Evaluation, Stage, StreamPlan, step1_stage, validate_recipe

__all__ = ["MotionRecipeConfig", "motion_loss_spec", "motion_recipe"]

_LOSS_KIND = {"relation": "relation", "mars": "mars", "both": "relation_mars", "none": "ce"}
_LOSS_TITLE = {
    "relation": "relation (Gram) loss + CE",
    "mars": "MARS (CE + MSE of pooled features)",
    "both": "relation loss + MARS",
    "none": "CE only, no distillation (control)",
}
_FEATURES = ("layer1", "layer2", "layer3", "layer4", "pooled")


@dataclass
class MotionRecipeConfig:
    """Knobs of the motion recipe (``recipe:`` with ``name: motion``; docs/motion.md; REF §6, our
    reconstruction).

    flow_stack: L, consecutive flow fields stacked per sampled frame (2L input channels) for flow streams.
    motion_loss: the student's loss against the frozen flow teacher: ``"relation"`` (Gram relation + CE,
        default), ``"mars"`` (CE + mars_alpha * MSE of pooled features), ``"both"``, or ``"none"`` (CE only:
        the no-distillation control that measures what the distillation adds).
    motion_fusion: ``"attention"`` (models/attention_fusion.py, default) or ``"mean"`` (late fusion of logits)
        for the deployed RGB + student model; attention_reduction: its bottleneck ratio r (default 16).
    motion_init: the student starts from the RGB stage (``"rgb"``, default) or from ``"scratch"``.
    relation_layers, temporal_weight: the relation loss's Gram layers/weights and its frame-to-frame term.
    mars_alpha: MARS feature weight (50 in the MARS code). two_stream: also train the RGB + flow baseline.
    """

    name: Literal["motion"] = "motion"
    flow_stack: int = 1
    motion_loss: Literal["relation", "mars", "both", "none"] = "relation"
    motion_fusion: Literal["attention", "mean"] = "attention"
    motion_init: Literal["rgb", "scratch"] = "rgb"
    relation_layers: dict[str, float] = field(default_factory=lambda: {"layer4": 1.0})
    temporal_weight: float = 0.0
    mars_alpha: float = 50.0
    attention_reduction: int = 16
    two_stream: bool = True

    def __post_init__(self) -> None:
        if self.flow_stack < 1 or self.attention_reduction < 1:
            raise ValueError(f"flow_stack and attention_reduction must be >= 1, got {self.flow_stack}, "
                             f"{self.attention_reduction}")
        motion_loss_spec(self)  # validates the motion knobs early, with the field names

    def input_channels(self) -> dict[str, int]:
        """Input channels of the flow modality: 2 per stacked flow field."""
        return {"flow": 2 * self.flow_stack}


def motion_loss_spec(cfg: MotionRecipeConfig) -> LossSpec:
    """The student stage's loss for ``cfg.motion_loss`` (student ``"hall"``, frozen teacher ``"flow"``)."""
    if cfg.motion_loss not in _LOSS_KIND:
        raise ValueError(f"recipe.motion_loss must be one of {sorted(_LOSS_KIND)}, got {cfg.motion_loss!r}")
    if cfg.motion_fusion not in ("attention", "mean"):
        raise ValueError(f"recipe.motion_fusion must be 'attention' or 'mean', got {cfg.motion_fusion!r}")
    if cfg.motion_init not in ("rgb", "scratch"):
        raise ValueError(f"recipe.motion_init must be 'rgb' or 'scratch', got {cfg.motion_init!r}")
    bad = [k for k in cfg.relation_layers if k not in _FEATURES]
    if bad:
        raise ValueError(f"recipe.relation_layers: unknown features {bad}; choose among {list(_FEATURES)}")
    kind = _LOSS_KIND[cfg.motion_loss]
    if kind == "ce":
        return LossSpec(kind="ce", classify="hall")
    try:
        return LossSpec(
            kind=kind,
            student="hall",
            teacher="flow",
            relation_layers=dict(cfg.relation_layers),  # type: ignore[arg-type]
            temporal_weight=cfg.temporal_weight,
            mars_alpha=cfg.mars_alpha,
        )
    except ValueError as exc:
        raise ValueError(f"recipe (motion): {exc}") from exc


def motion_recipe(cfg: MotionRecipeConfig) -> list[Stage]:
    """The motion stages of ``cfg`` (see the module docstring); validated."""
    spec = motion_loss_spec(cfg)
    L2 = 2 * cfg.flow_stack
    rgb = step1_stage("rgb", "RGB")
    flow = Stage(
        name="motion_flow",
        # The input channel count (2L) enters stage keys through the recipe's input_channels (pipeline/runner.py).
        title=f"Flow teacher: flow stream alone ({L2} input channels)",
        streams=(StreamPlan("flow", "flow", init="pretrained"),),
        loss=LossSpec(kind="ce", classify="flow"),
        inputs=("flow",),
        evaluate=Evaluation("flow", streams=("flow",), inputs=("flow",), paper_row="M1"),
        paper_row="M1",
    )
    stages = [flow, rgb]
    if cfg.two_stream:
        stages.append(
            Stage(
                name="motion_two_stream",
                title="Two-stream baseline: RGB + flow, late fusion (test needs flow)",
                streams=(
                    StreamPlan("rgb", "rgb", init="step1_rgb/rgb"),
                    StreamPlan("flow", "flow", init="motion_flow/flow"),
                ),
                loss=LossSpec(kind="ce", classify="fused"),
                inputs=("rgb", "flow"),
                evaluate=Evaluation(
                    "rgb+flow", streams=("rgb", "flow"), inputs=("rgb", "flow"), paper_row="M3"
                ),
                paper_row="M3",
            )
        )
    hall = StreamPlan("hall", "rgb", init="step1_rgb/rgb" if cfg.motion_init == "rgb" else "scratch")
    distilled = cfg.motion_loss != "none"
    stages.append(
        Stage(
            name="motion_student",
            title=f"Motion student: {_LOSS_TITLE[cfg.motion_loss]}"
            + (" against the frozen flow teacher" if distilled else "")
            + ("" if cfg.motion_init == "rgb" else ", from scratch"),
            # The control needs no teacher: leaving it out saves its forward pass.
            streams=(
                (StreamPlan("flow", "flow", init="motion_flow/flow", frozen=True), hall)
                if distilled
                else (hall,)
            ),
            loss=spec,
            inputs=("rgb", "flow") if distilled else ("rgb",),
            evaluate=Evaluation("student (rgb)", streams=("hall",), inputs=("rgb",), paper_row="M4"),
            paper_row="M4",
        )
    )
    attention = cfg.motion_fusion == "attention"
    stages.append(
        Stage(
            name="motion_final",
            title=f"Deployed RGB-only model: RGB + student ({cfg.motion_loss}), "
            + ("attention fusion" if attention else "late fusion (mean)"),
            streams=(
                StreamPlan("rgb", "rgb", init="step1_rgb/rgb"),
                StreamPlan("hall", "rgb", init="motion_student/hall"),
            ),
            loss=LossSpec(kind="ce", classify="fused"),
            inputs=("rgb",),
            evaluate=Evaluation(
                "rgb (rgb+student)", streams=("rgb", "hall"), inputs=("rgb",), paper_row="M5"
            ),
            fuse=("rgb", "hall"),
            fusion=cfg.motion_fusion,
            fusion_options=(("reduction", int(cfg.attention_reduction)),) if attention else (),
            paper_row="M5",
        )
    )
    validate_recipe(stages)
    return stages
