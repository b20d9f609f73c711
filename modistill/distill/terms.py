"""The thin mapping layer from a stage's loss spec + a model output to the loss functions.

``compute_loss(spec, out, labels)`` reads a ``MultiStreamOutput`` by duck typing only (docs/ARCHITECTURE.md):
``out.logits`` ``(B, K)`` fused video logits, ``out.streams[name].video_logits`` ``(B, K)``,
``.frame_logits`` ``(B, T, K)`` and ``.features[layer]`` ``(B*T, C, h, w)`` / ``(B*T, C)`` for ``"pooled"``.

Every row of Garcia et al. 2018 Table 2 trains with one ``LossSpec`` that its recipe stage names (recipes/depth.py);
REF §3 has the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from torch import Tensor

from .losses import (
    REDUCTIONS,
    cross_entropy_loss,
    generalized_distillation_loss,
    hallucination_loss,
    total_loss,
)
from .motion import mars_loss, relation_loss

__all__ = ["HALL_WEIGHT", "LossKind", "LossSpec", "compute_loss", "released_step3_spec"]

LossKind = Literal["ce", "hall", "gd", "eq7", "hoffman", "relation", "mars", "relation_mars"]
DistillKind = Literal["hall", "gd", "eq7"]

# Default weight lambda_l of eq. 3 on the last stage with the per-sample squared norm ("sample"), chosen on the
# demo's validation split as the paper chose alpha (docs/losses.md, "Choosing the weight").
HALL_WEIGHT = 0.01


@dataclass
class LossSpec:
    """What a training stage minimises. Fields not used by ``kind`` are ignored.

    kind:
        ``"ce"``: cross-entropy on ``classify`` logits (steps 1, 2, 4; Table 2 rows 1-2, 6-9, 15).
        ``"hall"``: eq. 3 only between ``student`` and ``teacher`` features (rows 10-11).
        ``"gd"``: eq. 5-6 only on their video logits (row 12; Table 2 calls it "eq. (4)").
        ``"eq7"``: ``(1 - alpha) * GD + alpha * hall`` (rows 13-14, the paper's step 3).
        ``"hoffman"``: one-step baseline of Hoffman et al. 2016 (rows 3-5): sum of CE on each of
        ``hoffman_ce`` plus the ``hoffman_distill`` term (eq. 3, 5 or 7) of ``student`` vs ``teacher``.
        ``"relation"``: ``ce_weight * CE(classify) + relation (Gram) loss`` (REF §6, our reconstruction).
        ``"mars"``: MARS, ``CE(classify) + mars_alpha * MSE(pooled student, pooled teacher)`` (REF §6).
        ``"relation_mars"``: both motion terms, ``CE(classify) + mars_alpha * MSE + relation`` (one CE).
    classify: ``"fused"`` (``out.logits``) or a stream name; ``None`` = ``"fused"`` for ``"ce"`` and the
        ``student`` stream for ``"relation"`` / ``"mars"`` (whose fused output may include the teacher).
    student / teacher: stream names; the teacher is always detached (a target, never trained by these terms).
    alpha, lam, T: eq. 7 / eq. 5 / eq. 6 parameters; defaults 0.5, 0.5, 10 (paper supplement, validation).
    student_temperature, t_squared: GD options (paper: False/False; released code: True/False; Hinton: both).
    hall_layers, hall_reduction: eq. 3 layer weights and reduction (see ``hallucination_loss``).
    """

    kind: LossKind = "ce"
    classify: str | None = None
    student: str = "hall"
    teacher: str = "depth"
    alpha: float = 0.5
    lam: float = 0.5
    T: float = 10.0
    student_temperature: bool = False
    t_squared: bool = False
    hall_layers: dict[str, float] = field(default_factory=lambda: {"layer4": HALL_WEIGHT})
    hall_reduction: Literal["sample", "frame", "mean", "sum"] = "sample"
    hoffman_ce: tuple[str, ...] = ("rgb", "depth")
    hoffman_distill: DistillKind = "eq7"
    relation_layers: dict[str, float] = field(default_factory=lambda: {"layer4": 1.0})
    temporal_weight: float = 0.0
    temporal_layer: str = "pooled"
    ce_weight: float = 1.0
    mars_alpha: float = 50.0
    mars_feature: str = "pooled"

    def __post_init__(self) -> None:
        if self.kind not in get_args(LossKind):
            raise ValueError(f"kind must be one of {list(get_args(LossKind))}, got {self.kind!r}")
        if self.hoffman_distill not in get_args(DistillKind):
            raise ValueError(f"hoffman_distill must be one of {list(get_args(DistillKind))}")
        if self.hall_reduction not in REDUCTIONS:
            raise ValueError(f"hall_reduction must be one of {REDUCTIONS}, got {self.hall_reduction!r}")
        for name in ("alpha", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.T > 0:
            raise ValueError(f"T must be > 0, got {self.T}")
        for name in ("temporal_weight", "ce_weight", "mars_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("hall_layers", "relation_layers"):
            bad = {k: w for k, w in getattr(self, name).items() if w < 0}
            if bad:
                raise ValueError(f"{name}: weights must be >= 0, got {bad}")
        self.hoffman_ce = tuple(self.hoffman_ce)
        if self.uses_teacher and self.student == self.teacher:
            raise ValueError(f"student and teacher must be different streams, both are {self.student!r}")
        if self._distill_kind in ("hall", "eq7") and not self.hall_layers:
            raise ValueError("hall_layers is empty: eq. 3 needs at least one layer, e.g. {layer4: 1.0}")
        relation = self.kind in ("relation", "relation_mars")
        if relation and not self.relation_layers and self.temporal_weight == 0:
            raise ValueError("relation loss with no relation_layers and temporal_weight 0 is empty")

    @property
    def _distill_kind(self) -> str | None:
        if self.kind in ("hall", "gd", "eq7"):
            return self.kind
        return self.hoffman_distill if self.kind == "hoffman" else None

    @property
    def uses_eq3(self) -> bool:
        """Whether this loss computes eq. 3 (reads ``hall_layers`` / ``hall_reduction``)."""
        return self._distill_kind in ("hall", "eq7")

    @property
    def uses_teacher(self) -> bool:
        """Whether this loss reads a teacher stream."""
        return self.kind != "ce"

    def classify_target(self) -> str:
        """The logits the CE term of this loss reads (``"fused"`` or a stream name)."""
        if self.classify is not None:
            return self.classify
        return "fused" if self.kind == "ce" else self.student

    def streams_needed(self) -> set[str]:
        """Stream names whose outputs ``compute_loss`` reads (``"fused"`` excluded)."""
        names: set[str] = set()
        if self.kind == "ce":
            names.add(self.classify_target())
        elif self.kind == "hoffman":
            names.update(self.hoffman_ce)
            names.update((self.student, self.teacher))
        else:
            names.update((self.student, self.teacher))
            if self.kind in ("relation", "mars", "relation_mars"):
                names.add(self.classify_target())
        names.discard("fused")
        return names


def released_step3_spec() -> LossSpec:
    """Step 3 as in the authors' released code (REF §2): eq. 7 with the sum-reduced eq. 3 on the last stage
    only, weighted by 0.01, and the student logits also divided by T in the soft term."""
    return LossSpec(kind="eq7", hall_layers={"layer4": 0.01}, hall_reduction="sum", student_temperature=True)


def _stream(out: Any, name: str, spec: LossSpec) -> Any:
    streams = getattr(out, "streams", None)
    if streams is None:
        raise TypeError(f"loss {spec.kind!r}: model output has no `streams` attribute ({type(out).__name__})")
    if name not in streams:
        raise KeyError(
            f"loss {spec.kind!r} needs stream {name!r}, but the model output has streams {sorted(streams)}"
        )
    return streams[name]


def _logits(out: Any, name: str, spec: LossSpec) -> Tensor:
    """``(B, K)`` video logits of ``name`` (``"fused"`` = ``out.logits``)."""
    if name == "fused":
        logits = getattr(out, "logits", None)
        if logits is None:
            raise ValueError(f"loss {spec.kind!r}: the model output has no fused logits (out.logits is None)")
        return logits
    return _stream(out, name, spec).video_logits


def _frames(out: Any, name: str, spec: LossSpec) -> int:
    return int(_stream(out, name, spec).frame_logits.shape[1])


def _distill(kind: str, spec: LossSpec, out: Any, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """eq. 3, eq. 5 or eq. 7 of ``spec.student`` against ``spec.teacher``."""
    s, t = _stream(out, spec.student, spec), _stream(out, spec.teacher, spec)
    parts: dict[str, Tensor] = {}
    if kind in ("hall", "eq7"):
        l_hall, p = hallucination_loss(t.features, s.features, spec.hall_layers, spec.hall_reduction,
                                       frames=_frames(out, spec.student, spec))
        parts.update(p)
        if kind == "hall":
            return l_hall, parts
    if kind in ("gd", "eq7"):
        l_gd, p = generalized_distillation_loss(
            s.video_logits,
            t.video_logits,
            labels,
            lam=spec.lam,
            T=spec.T,
            student_temperature=spec.student_temperature,
            t_squared=spec.t_squared,
        )
        parts.update(p)
        if kind == "gd":
            return l_gd, parts
    total, p = total_loss(l_gd, l_hall, alpha=spec.alpha)
    parts.update(p)
    return total, parts


def _video_pooled(feat: Tensor, frames: int) -> Tensor:
    """``(B*T, C[, h, w])`` per-frame features -> ``(B, C)`` averaged over frames (and space)."""
    if feat.dim() == 4:
        feat = feat.mean(dim=(2, 3))
    return feat.reshape(feat.shape[0] // frames, frames, -1).mean(dim=1)


def _relation(spec: LossSpec, out: Any) -> tuple[Tensor, dict[str, Tensor]]:
    """The relation (Gram) term of ``spec.student`` against ``spec.teacher``, without CE."""
    s, t = _stream(out, spec.student, spec), _stream(out, spec.teacher, spec)
    return relation_loss(
        s.features,
        t.features,
        spec.relation_layers,
        T=_frames(out, spec.student, spec),
        temporal_weight=spec.temporal_weight,
        temporal_layer=spec.temporal_layer,
    )


def _mars(spec: LossSpec, out: Any, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """MARS: CE on the classify logits + ``mars_alpha`` * MSE of the video-pooled features."""
    s, t = _stream(out, spec.student, spec), _stream(out, spec.teacher, spec)
    for role, st in (("student", s), ("teacher", t)):
        if spec.mars_feature not in st.features:
            raise KeyError(
                f"loss {spec.kind!r}: feature {spec.mars_feature!r} missing from the {role} stream "
                f"(available: {sorted(st.features)})"
            )
    frames = _frames(out, spec.student, spec)
    return mars_loss(
        _logits(out, spec.classify_target(), spec),
        labels,
        _video_pooled(s.features[spec.mars_feature], frames),
        _video_pooled(t.features[spec.mars_feature], frames),
        alpha=spec.mars_alpha,
    )


def compute_loss(spec: LossSpec, out: Any, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Evaluate ``spec`` on a model output.

    Args:
        spec: the stage's loss spec.
        out: a ``MultiStreamOutput`` (or any object with the same attributes, see the module docstring).
        labels: ``(B,)`` integer class indices.

    Returns:
        ``(total, parts)``; ``parts`` holds the named terms of the underlying losses plus ``"loss"`` = total.
        Hoffman CE terms are named ``"ce/<stream>"``.
    """
    kind = spec.kind
    parts: dict[str, Tensor] = {}
    if kind == "ce":
        total, parts = cross_entropy_loss(_logits(out, spec.classify_target(), spec), labels)
    elif kind in ("hall", "gd", "eq7"):
        total, parts = _distill(kind, spec, out, labels)
    elif kind == "hoffman":
        terms: list[Tensor] = []
        for name in spec.hoffman_ce:
            ce, _ = cross_entropy_loss(_logits(out, name, spec), labels)
            parts[f"ce/{name}"] = ce
            terms.append(ce)
        distill, p = _distill(spec.hoffman_distill, spec, out, labels)
        parts.update(p)
        total = sum(terms, distill)
    elif kind == "relation":
        total, parts = _relation(spec, out)
        if spec.ce_weight > 0:
            ce, _ = cross_entropy_loss(_logits(out, spec.classify_target(), spec), labels)
            parts["ce"] = ce
            total = total + spec.ce_weight * ce
    elif kind == "mars":
        total, parts = _mars(spec, out, labels)
    elif kind == "relation_mars":
        rel, parts = _relation(spec, out)
        mars, p = _mars(spec, out, labels)
        parts.update(p)
        total = mars + rel
    else:  # pragma: no cover - LossSpec.__post_init__ rejects unknown kinds
        raise ValueError(f"unknown loss kind {kind!r}")
    parts = dict(parts)
    parts["loss"] = total
    return total, parts
