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
hallucination streams initialised from step 1 (hall from the depth stream) and trained jointly, classification
losses plus eq. 3 / 5 / 7 for the hallucination stream.

Every knob of the paper's ablation (connections per step, direction, eq. 2 form, the step-3 loss) is a field of
:class:`DepthRecipeConfig`, so each Table 2 row is one config (recipes/ablation.py); ``RELEASED_PRESET`` is the
authors' released code as overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from modistill.core.paper import HOFFMAN_ROWS, INVERTED_SUFFIX, STEP2_ROWS, STEP3_ROWS
from modistill.distill.terms import HALL_WEIGHT, LossSpec
from modistill.models.multistream import Connection

from .stages import Evaluation, Stage, StandInPlan, StreamPlan, step1_stage, validate_recipe

__all__ = ["DepthRecipeConfig", "RELEASED_PRESET", "depth_recipe", "garcia_recipe", "hoffman_recipe"]

# The authors' released TensorFlow code where it differs from the paper (REF §1-3), exactly: S2 with the additive
# connections relu(a) + a*relu(m), S3 without connections, eq. 3 summed over batch, frames, channels and positions
# of the last stage times 0.01, the student's logits divided by T too, S4 late fusion without connections. One
# list, used by the `released` ablation variant and mirrored by configs/released_code.yaml (a test checks both).
RELEASED_PRESET: tuple[str, ...] = (
    "recipe.variant=released",
    "recipe.connections=true",
    "recipe.step3_connections=false",
    "recipe.step4_connections=false",
    "recipe.hall_reduction=sum",
    "recipe.hall_layers={layer4: 0.01}",
    "recipe.student_temperature=true",
    "recipe.t_squared=false",
)

@dataclass
class DepthRecipeConfig:
    """Knobs of the depth recipe (``recipe:`` with ``name: garcia | hoffman``; the motion recipe has its own
    config, recipes/motion.py, and ``recipe.name`` picks which). Defaults are the paper's (REF §1-3).

    name: ``"garcia"`` (the four steps) or ``"hoffman"`` (one-step baseline).
    connections: cross-stream connections in step 2 (Table 2 row 8 vs 9), and in step 4 unless
        ``step4_connections`` says otherwise.
    step4_connections: hall -> RGB connections in step 4; ``None`` = as ``connections`` (the released code's S4
        is late fusion without them while its S2 has them).
    direction: ``"depth_to_rgb"`` (paper) or ``"rgb_to_depth"`` (supplement Table 1, inverted: the step-3
        teacher is the whole frozen step-2 model, its RGB stream feeding its depth stream).
    variant: ``"paper"`` (eq. 2) or ``"released"`` (relu(a) + a * relu(m), the authors' TensorFlow code).
    conn_stages: ResNet stages that receive a connection (default all four).
    step3_connections: the hallucination stream receives the frozen teacher's connections in step 3 (paper;
        the released code ran without: Table 2 rows 13 vs 14).
    step3_select: how step 3 (with connections) is validated for its best epoch: ``"joint"`` (in the graph it
        trains in: the frozen depth stream fed depth injects it; validation data are training data, where depth
        is privileged information) or ``"strict"`` (the hall stream alone on RGB). Both are reported.
    step4_hall_source: what the hall stream receives in step 4 in place of its step-3 connections whose source
        is gone: ``"drop"`` (nothing: plain residual units), ``"zero"`` (m = 0), ``"mean"`` (the per-channel
        mean of the source's unit-1 output on the training split, fixed) or ``"learned"`` (that mean, trained).
    step3_loss: ``"hall"`` (eq. 3), ``"gd"`` (eq. 5-6; "eq. (4)" in Table 2) or ``"eq7"`` (the paper's).
    hoffman_loss: the distillation term of the Hoffman baseline (rows 3 / 4 / 5).
    hoffman_eq3_head: row 3 (eq. 3 only, which trains no classifier): ``"ce"`` (the hall stream's classifier
        trained with cross-entropy, as every network in Hoffman et al.) or ``"rgb_only"`` (predict with RGB).
    alpha, lam, T: eq. 7, eq. 5, eq. 6 (selected on validation in the paper: 0.5, 0.5, 10).
    student_temperature, t_squared: GD options (released code: student temperature on; Hinton: T^2 too).
    hall_layers, hall_reduction: eq. 3 layers/weights and reduction (``"sample"``: squared norm per video,
        the paper's; ``"frame"``, ``"mean"``, ``"sum"``: docs/losses.md; released: {"layer4": 0.01}, "sum").
    """

    name: Literal["garcia", "hoffman"] = "garcia"
    connections: bool = True
    step4_connections: bool | None = None
    direction: Literal["depth_to_rgb", "rgb_to_depth"] = "depth_to_rgb"
    variant: Literal["paper", "released"] = "paper"
    conn_stages: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    step3_connections: bool = True
    step3_select: Literal["joint", "strict"] = "joint"
    step4_hall_source: Literal["drop", "zero", "mean", "learned"] = "mean"
    step3_loss: Literal["hall", "gd", "eq7"] = "eq7"
    hoffman_loss: Literal["hall", "gd", "eq7"] = "eq7"
    hoffman_eq3_head: Literal["ce", "rgb_only"] = "ce"
    alpha: float = 0.5
    lam: float = 0.5
    T: float = 10.0
    student_temperature: bool = False
    t_squared: bool = False
    hall_layers: dict[str, float] = field(default_factory=lambda: {"layer4": HALL_WEIGHT})
    hall_reduction: Literal["sample", "frame", "mean", "sum"] = "sample"

    def __post_init__(self) -> None:
        if not self.conn_stages or any(s not in (1, 2, 3, 4) for s in self.conn_stages):
            raise ValueError(f"conn_stages must be a non-empty subset of 1..4, got {self.conn_stages}")
        # Building the loss spec validates alpha, lam, T and the layers early, with the field names.
        self.distill_spec("eq7")

    def input_channels(self) -> dict[str, int]:
        """Input channels of modalities other than RGB's and depth's 3 (none here)."""
        return {}

    @property
    def inverted(self) -> bool:
        return self.direction == "rgb_to_depth"

    @property
    def s4_connections(self) -> bool:
        return self.connections if self.step4_connections is None else self.step4_connections

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
        src, dst = (privileged, other) if not self.inverted else (other, privileged)
        return Connection(source=src, target=dst, stages=tuple(self.conn_stages), variant=self.variant)

    def row(self, row: str) -> str:
        """A Table 2 row label, suffixed ``a`` for the inverted direction (supplement Table 1)."""
        return row + INVERTED_SUFFIX if self.inverted else row


def _step2(cfg: DepthRecipeConfig) -> Stage:
    conns = (cfg.connection("depth", "rgb"),) if cfg.connections else ()
    row = STEP2_ROWS[cfg.connections]
    r6, r7 = (cfg.row("6"), cfg.row("7")) if cfg.connections else (f"{row}-depth", f"{row}-rgb")
    both = ("rgb", "depth")
    # Rows 6 and 7: each stream's logits inside the teacher, connections active (what the released S2 logs);
    # the same streams run alone (connection dropped) are extra rows.
    extra = (Evaluation("depth stream in the teacher", both, both, paper_row=r6, output="depth"),
             Evaluation("rgb stream in the teacher", both, both, paper_row=r7, output="rgb"))
    if cfg.connections:
        extra += (Evaluation("depth stream alone", ("depth",), ("depth",), paper_row=f"{r6}-alone"),
                  Evaluation("rgb stream alone", ("rgb",), ("rgb",), paper_row=f"{r7}-alone"))
    return Stage(
        name="step2",
        title="Step 2: two-stream teacher (RGB + depth)" + ("" if cfg.connections else ", no connections"),
        streams=(StreamPlan("rgb", "rgb", init="step1_rgb/rgb"),
                 StreamPlan("depth", "depth", init="step1_depth/depth")),
        connections=conns,
        loss=LossSpec(kind="ce", classify="fused"),
        inputs=both,
        evaluate=Evaluation("rgb+depth", streams=both, inputs=both, paper_row=cfg.row(row) if cfg.connections
                            else row),
        extra=extra,
        paper_row=cfg.row(row) if cfg.connections else row,
    )


def _step3(cfg: DepthRecipeConfig) -> Stage:
    """The student: the frozen teacher (its depth stream; inverted: the whole step-2 model, RGB feeding depth)
    and the hall stream trained against it; with connections the teacher side feeds the hall stream, never the
    reverse (the student must not modulate its own teacher's targets)."""
    row = cfg.row(STEP3_ROWS.get((cfg.step3_loss, cfg.step3_connections), ""))
    teacher = (StreamPlan("depth", "depth", init="step2/depth", frozen=True),)
    conns: tuple[Connection, ...] = ()
    if cfg.inverted:  # the teacher's own rgb -> depth connections, frozen like its two streams
        teacher = (StreamPlan("rgb", "rgb", init="step2/rgb", frozen=True), *teacher)
        conns = (cfg.connection("depth", "rgb"),) if cfg.connections else ()
    feeder = "rgb" if cfg.inverted else "depth"  # the teacher-side stream that feeds the hall stream
    if cfg.step3_connections:
        c = cfg.connection("depth", "rgb")
        conns += (Connection(feeder, "hall", c.stages, c.variant),)
    streams = (*teacher, StreamPlan("hall", "rgb", init="step2/depth"))
    strict = Evaluation("hall stream alone (RGB, strict)", ("hall",), ("rgb",), paper_row=f"{row}-strict") \
        if cfg.step3_connections else Evaluation("hall stream alone (RGB)", ("hall",), ("rgb",), paper_row=row)
    evaluations = [strict]
    if cfg.step3_connections:
        inputs = ("rgb",) if cfg.inverted else ("rgb", "depth")
        what = "the frozen RGB stream injected (RGB only)" if cfg.inverted else "depth injected (uses depth at test)"
        evaluations.insert(0, Evaluation(f"hall stream with {what}", (feeder, "hall"), inputs, paper_row=row,
                                         output="hall"))
        if cfg.step3_select == "strict":
            evaluations.reverse()
    return Stage(
        name="step3",
        title=f"Step 3: hallucination stream ({cfg.step3_loss})" + ("" if cfg.step3_connections
                                                                    else ", no connections"),
        streams=streams,
        connections=conns,
        loss=cfg.distill_spec(cfg.step3_loss, student="hall", teacher="depth"),
        inputs=("rgb", "depth"),
        evaluate=evaluations[0],
        extra=tuple(evaluations[1:]),
        paper_row=row,
    )


def _step4(cfg: DepthRecipeConfig, step3: Stage) -> Stage:
    """The deployed model; the hall stream's step-3 connections whose source is gone get a stand-in."""
    conns = (cfg.connection("hall", "rgb"),) if cfg.s4_connections else ()
    fed = {s for c in conns if c.target == "hall" for s in c.stages}
    standins = []
    if cfg.step4_hall_source != "drop":
        for c in step3.connections:
            lost = tuple(s for s in c.stages if s not in fed)
            if c.target == "hall" and lost:
                src = step3.stream(c.source)
                standins.append(StandInPlan("hall", lost, c.variant, cfg.step4_hall_source,  # type: ignore[arg-type]
                                            source_init=f"step3/{src.name}", source_modality=src.modality))
    s3row = step3.paper_row
    row = cfg.row("15") + ("" if cfg.step3_connections else "-nc")
    both = ("rgb", "hall")
    return Stage(
        name="step4",
        title="Step 4: final RGB-only model (RGB + hallucination)",
        streams=(StreamPlan("rgb", "rgb", init="step2/rgb"), StreamPlan("hall", "rgb", init="step3/hall")),
        connections=conns,
        loss=LossSpec(kind="ce", classify="fused"),
        inputs=("rgb",),
        evaluate=Evaluation("rgb (rgb+hall)", streams=both, inputs=("rgb",), paper_row=row),
        extra=(Evaluation("before fine-tuning (rgb+hall)", both, ("rgb",), paper_row=f"{s3row}-init" if s3row else "",
                          weights="init"),),
        paper_row=row,
        standins=tuple(standins),
    )


def garcia_recipe(cfg: DepthRecipeConfig) -> list[Stage]:
    """The four steps of Garcia et al. 2018 §3.2 (REF §3)."""
    step3 = _step3(cfg)
    stages = [step1_stage("rgb", "RGB"), step1_stage("depth", "depth"), _step2(cfg), step3, _step4(cfg, step3)]
    validate_recipe(stages)
    return stages


def hoffman_recipe(cfg: DepthRecipeConfig) -> list[Stage]:
    """Hoffman et al. 2016 one-step baseline as in Garcia's Table 2 rows 3-5: "initialized with the pre-trained
    networks from the first training step, and the hallucination network initialized using the depth network";
    no connections, all three streams trained jointly; the test uses RGB only (RGB + hallucination streams,
    late fusion). Eq. 3 alone trains no classifier: Hoffman et al. train each network's classifier, so row 3
    adds a cross-entropy on the hall stream (``hoffman_eq3_head="ce"``), or predicts with RGB alone."""
    row = HOFFMAN_ROWS[cfg.hoffman_loss]
    ce: tuple[str, ...] = ("rgb", "depth")
    evaluate = Evaluation("rgb (rgb+hall)", streams=("rgb", "hall"), inputs=("rgb",), paper_row=row)
    if cfg.hoffman_loss == "hall":
        if cfg.hoffman_eq3_head == "ce":
            ce += ("hall",)
        else:
            evaluate = Evaluation("rgb stream alone", streams=("rgb",), inputs=("rgb",), paper_row=row)
    stage = Stage(
        name=f"hoffman_{cfg.hoffman_loss}",
        title=f"Hoffman et al. one-step baseline ({cfg.hoffman_loss})",
        streams=(StreamPlan("rgb", "rgb", init="step1_rgb/rgb"),
                 StreamPlan("depth", "depth", init="step1_depth/depth"),
                 StreamPlan("hall", "rgb", init="step1_depth/depth")),
        loss=cfg.distill_spec("hoffman", hoffman_distill=cfg.hoffman_loss, hoffman_ce=ce,
                              student="hall", teacher="depth"),
        inputs=("rgb", "depth"),
        evaluate=evaluate,
        fuse=("rgb", "hall"),
        paper_row=row,
    )
    stages = [step1_stage("rgb", "RGB"), step1_stage("depth", "depth"), stage]
    validate_recipe(stages)
    return stages


def depth_recipe(cfg: DepthRecipeConfig) -> list[Stage]:
    """The stages ``cfg`` describes (the four steps, or the Hoffman baseline)."""
    return garcia_recipe(cfg) if cfg.name == "garcia" else hoffman_recipe(cfg)
