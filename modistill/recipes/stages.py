"""The typed pieces of a staged recipe: what a stage builds, trains, freezes, loads, minimises and evaluates.

A recipe is an explicit ordered ``list[Stage]`` (see ``depth.py`` for the paper's four steps). Stages are plain
frozen dataclasses so a recipe can be printed, saved with a run (``stage_to_dict``) and hashed: a stage whose
definition, weight sources and training settings are unchanged is not trained twice (runner.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from modistill.distill.terms import LossSpec
from modistill.models.multistream import Connection

__all__ = ["StreamPlan", "Evaluation", "StandInPlan", "Stage", "stage_to_dict", "validate_recipe"]

SCRATCH = "scratch"
PRETRAINED = "pretrained"


@dataclass(frozen=True)
class StreamPlan:
    """One stream of a stage.

    name: the stream's name in the network (``"rgb"``, ``"depth"``, ``"hall"``, ``"flow"``...).
    modality: the batch key it reads (the hallucination stream reads ``"rgb"``).
    init: where its weights come from: ``"scratch"``, ``"pretrained"`` (the experiment's local ImageNet file,
        or scratch when none is configured) or ``"<stage>/<stream>"`` (the best checkpoint of an earlier stage).
    frozen: no gradient and BatchNorm statistics kept in eval mode (REF §3 step 3).
    """

    name: str
    modality: str
    init: str = PRETRAINED
    frozen: bool = False

    @property
    def source(self) -> tuple[str, str] | None:
        """``(stage, stream)`` when the weights come from an earlier stage."""
        if self.init in (SCRATCH, PRETRAINED):
            return None
        stage, sep, stream = self.init.partition("/")
        if not sep or not stage or not stream:
            raise ValueError(
                f"stream {self.name!r}: init must be 'scratch', 'pretrained' or '<stage>/<stream>', "
                f"got {self.init!r}"
            )
        return stage, stream


@dataclass(frozen=True)
class Evaluation:
    """A way to evaluate a stage's model: run ``streams`` with only ``inputs`` given.

    The prediction is the network's fused logits over the run streams (late fusion, REF §1), or the single
    stream's video logits when one stream runs, or, with ``output``, the video logits of that one stream while
    all of ``streams`` run in one graph (its connections active: e.g. the step-2 RGB stream inside the teacher,
    Table 2 row 7, or the step-3 hallucination stream with the frozen depth stream injecting depth).
    ``weights``: ``"best"`` (the selected epoch; every main evaluation) or ``"init"`` (the stage's handed-over
    weights before any training, e.g. the step-4 model before fine-tuning; extra evaluations only).
    """

    name: str
    streams: tuple[str, ...]
    inputs: tuple[str, ...]
    paper_row: str = ""
    output: str | None = None
    weights: Literal["best", "init"] = "best"


@dataclass(frozen=True)
class StandInPlan:
    """What ``target`` receives in place of a connection whose source stream this stage lacks (REF §3 step 4:
    the hallucination stream was trained with depth injected and depth is gone), applied at ``stages`` in the
    eq. 2 form ``variant``:

    mode: ``"zero"`` (m = 0), ``"mean"`` (m = the per-channel mean of the absent source's post-ReLU unit-1
        output over the training split, fixed) or ``"learned"`` (initialised as ``"mean"``, then trained).
    source_init: ``"<stage>/<stream>"``: the absent source's weights (read for ``mean`` / ``learned``).
    source_modality: the input that source reads (loaded from the training split to compute the mean).
    """

    target: str
    stages: tuple[int, ...]
    variant: str
    mode: Literal["zero", "mean", "learned"]
    source_init: str
    source_modality: str

    @property
    def source(self) -> tuple[str, str]:
        stage, _, stream = self.source_init.partition("/")
        return stage, stream


@dataclass(frozen=True)
class Stage:
    """One training step of a recipe.

    streams: the network's streams (order = fusion order).
    connections: cross-stream connections active in this stage's network (Garcia et al. 2018 eq. 2).
    loss: what is minimised (distill/terms.py); every trainable stream must be reached by it.
    inputs: modalities loaded for training (and validation).
    evaluate: the evaluation used for model selection and reported as the stage's result.
    extra: further evaluations reported from the best weights (e.g. each stream of the teacher alone).
    fuse: the streams whose predictions are fused (default: all).
    fusion: a registered fusion module (``"mean"``: late fusion of logits, the paper's; ``"attention"``: the
        learned attention fusion of models/attention_fusion.py) with its ``fusion_options`` as (key, value) pairs.
    """

    name: str
    title: str
    streams: tuple[StreamPlan, ...]
    loss: LossSpec
    inputs: tuple[str, ...]
    evaluate: Evaluation
    connections: tuple[Connection, ...] = ()
    extra: tuple[Evaluation, ...] = ()
    fuse: tuple[str, ...] | None = None
    fusion: str = "mean"
    fusion_options: tuple[tuple[str, Any], ...] = ()
    paper_row: str = ""
    standins: tuple[StandInPlan, ...] = ()

    def stream(self, name: str) -> StreamPlan:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(
            f"stage {self.name!r} has no stream {name!r}; streams: {[s.name for s in self.streams]}"
        )

    @property
    def trainable(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.streams if not s.frozen)

    @property
    def frozen(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.streams if s.frozen)

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Earlier stages this stage takes weights from (stand-in statistics included)."""
        srcs = [s.source[0] for s in self.streams if s.source]
        srcs += [sd.source[0] for sd in self.standins if sd.mode != "zero"]
        return tuple(dict.fromkeys(srcs))


def stage_to_dict(stage: Stage) -> dict[str, Any]:
    """A JSON-ready description of ``stage`` (saved with runs; hashed to reuse trained stages)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return conv(stage)


# What a stage computes: everything but its labels. Titles, paper-row labels and the extra evaluations (computed
# from the best weights after training) do not change the trained weights, so they stay out of stage keys and
# relabelling a row never retrains a stage.
_LABELS = ("title", "paper_row", "extra")
# Loss fields that a stage's loss does not read are hashed at fixed values (those of the first release), so a
# change of an unrelated default (eq. 3's reduction and weight) never re-keys a stage that does not use eq. 3.
_UNREAD_EQ3 = {"hall_layers": {"layer4": 1.0}, "hall_reduction": "mean"}


def stage_identity(stage: Stage) -> dict[str, Any]:
    """The part of ``stage_to_dict(stage)`` that determines its trained weights (hashed into stage keys)."""
    d = {k: v for k, v in stage_to_dict(stage).items() if k not in _LABELS}
    ev = d["evaluate"]  # selects the best epoch
    d["evaluate"] = {k: ev[k] for k in ("streams", "inputs")} | ({"output": ev["output"]} if ev["output"] else {})
    if not d["standins"]:
        del d["standins"]  # stages without stand-ins keep the keys they had before stand-ins existed
    if not stage.loss.uses_eq3:
        d["loss"] = d["loss"] | _UNREAD_EQ3
    return d


def validate_recipe(stages: list[Stage]) -> None:
    """Check a recipe before anything trains: unique names, weight sources that exist earlier, inputs that
    cover every run stream, evaluations that only name known streams, a loss reaching every trainable stream."""
    seen: dict[str, Stage] = {}
    for st in stages:
        where = f"stage {st.name!r}"
        if st.name in seen:
            raise ValueError(f"{where}: duplicate stage name")
        names = [s.name for s in st.streams]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"{where}: stream names must be distinct and non-empty, got {names}")
        for s in st.streams:
            src = s.source
            if src is None:
                continue
            if src[0] not in seen:
                raise ValueError(
                    f"{where}: stream {s.name!r} takes weights from {s.init!r}, but stage "
                    f"{src[0]!r} does not come earlier in the recipe"
                )
            seen[src[0]].stream(src[1])
        missing = {s.modality for s in st.streams} - set(st.inputs)
        if missing:
            raise ValueError(
                f"{where}: streams read {sorted(missing)}, which are not among inputs {st.inputs}"
            )
        if st.evaluate.weights != "best":
            raise ValueError(f"{where}: the main evaluation selects the best epoch; weights must be 'best'")
        for ev in (st.evaluate, *st.extra):
            unknown = set(ev.streams) - set(names)
            if unknown:
                raise ValueError(f"{where}: evaluation {ev.name!r} names unknown streams {sorted(unknown)}")
            if ev.output is not None and ev.output not in ev.streams:
                raise ValueError(f"{where}: evaluation {ev.name!r} outputs {ev.output!r}, not among its streams")
            need = {st.stream(n).modality for n in ev.streams} - set(ev.inputs)
            if need:
                raise ValueError(
                    f"{where}: evaluation {ev.name!r} runs streams that read {sorted(need)}, "
                    f"not in its inputs {ev.inputs}"
                )
        _validate_standins(st, names, seen)
        reached = st.loss.streams_needed()
        if st.loss.uses_teacher:
            # Every distillation term detaches its teacher (distill/terms.py): reading it trains nothing, only
            # a classification term on it (Hoffman's per-stream CE) or a connection out of it does.
            reached.discard(st.loss.teacher)
            if st.loss.kind == "hoffman":
                reached |= set(st.loss.hoffman_ce)
            elif st.loss.kind in ("relation", "mars"):
                reached.add(st.loss.classify_target())
            reached.discard("fused")
        if (
            st.loss.kind in ("ce", "hoffman", "relation", "mars", "relation_mars")
            and st.loss.classify_target() == "fused"
        ):
            reached |= set(st.fuse or names)
        idle = [n for n in st.trainable if n not in reached and not _fed_by_connection(st, n, reached)]
        if idle:
            raise ValueError(
                f"{where}: trainable streams {idle} get no gradient from the loss {st.loss.kind!r}; "
                "freeze them or change the loss"
            )
        seen[st.name] = st


def _validate_standins(st: Stage, names: list[str], seen: dict[str, Stage]) -> None:
    """A stand-in replaces a connection the stage does not have, into a stream it has, from an earlier stage."""
    where = f"stage {st.name!r}"
    for sd in st.standins:
        if sd.target not in names:
            raise ValueError(f"{where}: stand-in for unknown stream {sd.target!r}")
        taken = {s for c in st.connections if c.target == sd.target for s in c.stages}
        if taken & set(sd.stages):
            raise ValueError(f"{where}: stream {sd.target!r} already receives a connection at {sorted(taken)}")
        if sd.mode != "zero":
            src_stage, src_stream = sd.source
            if src_stage not in seen:
                raise ValueError(f"{where}: stand-in statistics from {sd.source_init!r}, which is not earlier")
            seen[src_stage].stream(src_stream)


def _fed_by_connection(st: Stage, name: str, reached: set[str]) -> bool:
    """A source stream trains through the product of a connection into a stream the loss reaches."""
    return any(c.source == name and c.target in reached for c in st.connections)


def step1_stage(modality: str, label: str) -> Stage:
    """Step 1 of the staged recipes: the ``modality`` stream alone from its initial weights, cross-entropy,
    evaluated on its own input (Table 2 row 2 for RGB, row 1 for depth; the motion recipe shares the RGB one,
    so both methods train it once on a shared stage root)."""
    row = {"rgb": "2", "depth": "1"}.get(modality, "")
    return Stage(
        name=f"step1_{modality}",
        title=f"Step 1: {label} stream alone",
        streams=(StreamPlan(modality, modality, init=PRETRAINED),),
        loss=LossSpec(kind="ce", classify=modality),
        inputs=(modality,),
        evaluate=Evaluation(modality, streams=(modality,), inputs=(modality,), paper_row=row),
        paper_row=row,
    )
