"""The privileged-depth recipe of Garcia et al. (ECCV 2018), §3.2 and Fig. 1, as an ordered list of stages.

    step1_rgb, step1_depth   each stream alone, cross-entropy (ImageNet init)              Table 2 rows 2, 1
    step2                    RGB + depth jointly, depth -> RGB connections, CE on the       rows 8 (6, 7)
                             late-fused prediction: the teacher (upper bound)
    step3                    depth stream frozen (BN too); hallucination stream (RGB        rows 10-14
                             input) initialised from the step-2 depth weights, trained
                             with eq. 7 against it; depth -> hall connections (paper)
    step4                    RGB stream (step 2) + hall stream (step 3), hall -> RGB        row 15
                             connections, fine-tuned on RGB only: the deployed model

``hoffman`` is the one-step baseline of Hoffman et al. CVPR 2016 (Table 2 rows 3-5): RGB, depth and
hallucination streams trained jointly, classification losses plus eq. 3 / 5 / 7 for the hallucination stream.

Every knob of the paper's ablation (connections on/off, direction, released-code variant, the step-3 loss) is a
field of :class:`DepthRecipeConfig`, so each Table 2 row is one config (configs/ablation/*.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from modistill.core.paper import HOFFMAN_ROWS, STEP2_ROWS, STEP3_ROWS
from modistill.distill.terms import LossSpec
from modistill.models.multistream import Connection

from .stages import Evaluation, Stage, StreamPlan, step1_stage, validate_recipe

__all__ = ["DepthRecipeConfig", "depth_recipe", "garcia_recipe", "hoffman_recipe"]


@dataclass
class DepthRecipeConfig:
    """Knobs of the depth recipe (``recipe:`` with ``name: garcia | hoffman``; the motion recipe has its own
    config, recipes/motion.py, and ``recipe.name`` picks which). Defaults are the paper's (REF §1-3).

    name: ``"garcia"`` (the four steps) or ``"hoffman"`` (one-step baseline).
    connections: cross-stream connections in step 2 and step 4 (Table 2 row 8 vs 9).
    direction: ``"depth_to_rgb"`` (paper) or ``"rgb_to_depth"`` (supplement Table 1, inverted); in step 3 and
        step 4 the privileged side (depth, then hall) stays the source unless inverted.
    variant: ``"paper"`` (eq. 2) or ``"released"`` (relu(a) + a * relu(m), the authors' TensorFlow code).
    conn_stages: ResNet stages that receive a connection (default all four).
    step3_connections: the frozen depth stream feeds the hallucination stream in step 3 (paper; the released
        code ran without: Table 2 rows 13 vs 14).
    step3_loss: ``"hall"`` (eq. 3), ``"gd"`` (eq. 5-6; "eq. (4)" in Table 2) or ``"eq7"`` (the paper's).
    hoffman_loss: the distillation term of the Hoffman baseline (rows 3 / 4 / 5).
    alpha, lam, T: eq. 7, eq. 5, eq. 6 (selected on validation in the paper: 0.5, 0.5, 10).
    student_temperature, t_squared: GD options (released code: student temperature on; Hinton: T^2 too).
    hall_layers, hall_reduction: eq. 3 layers/weights and reduction (released code: {"layer4": 0.01}, "sum").
    """

    name: Literal["garcia", "hoffman"] = "garcia"
    connections: bool = True
    direction: Literal["depth_to_rgb", "rgb_to_depth"] = "depth_to_rgb"
    variant: Literal["paper", "released"] = "paper"
    conn_stages: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    step3_connections: bool = True
    step3_loss: Literal["hall", "gd", "eq7"] = "eq7"
    hoffman_loss: Literal["hall", "gd", "eq7"] = "eq7"
    alpha: float = 0.5
    lam: float = 0.5
    T: float = 10.0
    student_temperature: bool = False
    t_squared: bool = False
    hall_layers: dict[str, float] = field(default_factory=lambda: {"layer4": 1.0})
    hall_reduction: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        if not self.conn_stages or any(s not in (1, 2, 3, 4) for s in self.conn_stages):
            raise ValueError(f"conn_stages must be a non-empty subset of 1..4, got {self.conn_stages}")
        # Building the loss spec validates alpha, lam, T and the layers early, with the field names.
        self.distill_spec("eq7")

    def input_channels(self) -> dict[str, int]:
        """Input channels of modalities other than RGB's and depth's 3 (none here)."""
        return {}

    def distill_spec(self, kind: str, **kw: object) -> LossSpec:
        return LossSpec(
            kind=kind,  # type: ignore[arg-type]
            alpha=self.alpha,
            lam=self.lam,
            T=self.T,
            student_temperature=self.student_temperature,
            t_squared=self.t_squared,
            hall_layers=dict(self.hall_layers),
            hall_reduction=self.hall_reduction,
            **kw,  # type: ignore[arg-type]
        )

    def connection(self, privileged: str, other: str) -> Connection:
        """A connection between the privileged-side stream and the RGB-side one, in the configured direction."""
        src, dst = (privileged, other) if self.direction == "depth_to_rgb" else (other, privileged)
        return Connection(source=src, target=dst, stages=tuple(self.conn_stages), variant=self.variant)


def garcia_recipe(cfg: DepthRecipeConfig) -> list[Stage]:
    """The four steps of Garcia et al. 2018 §3.2 (REF §3)."""
    conn2 = (cfg.connection("depth", "rgb"),) if cfg.connections else ()
    conn3 = (cfg.connection("depth", "hall"),) if cfg.step3_connections else ()
    conn4 = (cfg.connection("hall", "rgb"),) if cfg.connections else ()
    stages = [
        step1_stage("rgb", "RGB"),
        step1_stage("depth", "depth"),
        Stage(
            name="step2",
            title="Step 2: two-stream teacher (RGB + depth)" + ("" if cfg.connections else ", no connections"),
            streams=(StreamPlan("rgb", "rgb", init="step1_rgb/rgb"),
                     StreamPlan("depth", "depth", init="step1_depth/depth")),
            connections=conn2,
            loss=LossSpec(kind="ce", classify="fused"),
            inputs=("rgb", "depth"),
            evaluate=Evaluation("rgb+depth", streams=("rgb", "depth"), inputs=("rgb", "depth"),
                                paper_row=STEP2_ROWS[cfg.connections]),
            # Rows 6 and 7: each stream of the teacher alone (connections inactive with one stream).
            extra=(Evaluation("depth stream", streams=("depth",), inputs=("depth",), paper_row="6"),
                   Evaluation("rgb stream", streams=("rgb",), inputs=("rgb",), paper_row="7")),
            paper_row=STEP2_ROWS[cfg.connections],
        ),
        Stage(
            name="step3",
            title=f"Step 3: hallucination stream ({cfg.step3_loss})"
            + ("" if cfg.step3_connections else ", no connections"),
            streams=(StreamPlan("depth", "depth", init="step2/depth", frozen=True),
                     StreamPlan("hall", "rgb", init="step2/depth")),
            connections=conn3,
            loss=cfg.distill_spec(cfg.step3_loss, student="hall", teacher="depth"),
            inputs=("rgb", "depth"),
            # Evaluated on RGB alone: the connection from depth is inactive without depth input.
            evaluate=Evaluation("hall (rgb)", streams=("hall",), inputs=("rgb",),
                                paper_row=STEP3_ROWS.get((cfg.step3_loss, cfg.step3_connections), "")),
            paper_row=STEP3_ROWS.get((cfg.step3_loss, cfg.step3_connections), ""),
        ),
        Stage(
            name="step4",
            title="Step 4: final RGB-only model (RGB + hallucination)",
            streams=(StreamPlan("rgb", "rgb", init="step2/rgb"), StreamPlan("hall", "rgb", init="step3/hall")),
            connections=conn4,
            loss=LossSpec(kind="ce", classify="fused"),
            inputs=("rgb",),
            evaluate=Evaluation("rgb (rgb+hall)", streams=("rgb", "hall"), inputs=("rgb",), paper_row="15"),
            paper_row="15",
        ),
    ]
    validate_recipe(stages)
    return stages


def hoffman_recipe(cfg: DepthRecipeConfig) -> list[Stage]:
    """Hoffman et al. 2016 one-step baseline as in Garcia's Table 2 rows 3-5: no connections, all three streams
    trained jointly; the test uses RGB only (RGB + hallucination streams, late fusion)."""
    row = HOFFMAN_ROWS[cfg.hoffman_loss]
    stage = Stage(
        name=f"hoffman_{cfg.hoffman_loss}",
        title=f"Hoffman et al. one-step baseline ({cfg.hoffman_loss})",
        streams=(StreamPlan("rgb", "rgb"), StreamPlan("depth", "depth"), StreamPlan("hall", "rgb")),
        loss=cfg.distill_spec("hoffman", hoffman_distill=cfg.hoffman_loss, hoffman_ce=("rgb", "depth"),
                              student="hall", teacher="depth"),
        inputs=("rgb", "depth"),
        evaluate=Evaluation("rgb (rgb+hall)", streams=("rgb", "hall"), inputs=("rgb",), paper_row=row),
        fuse=("rgb", "hall"),
        paper_row=row,
    )
    validate_recipe([stage])
    return [stage]


def depth_recipe(cfg: DepthRecipeConfig) -> list[Stage]:
    """The stages ``cfg`` describes (the four steps, or the Hoffman baseline)."""
    return garcia_recipe(cfg) if cfg.name == "garcia" else hoffman_recipe(cfg)
