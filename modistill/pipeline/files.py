"""The files the pipeline writes into stage and run folders, one typed, versioned schema class each.

    <stage_dir>/stage.json    StageSpecFile     what the stage trains (experiment, stage definition, key)
    <stage_dir>/result.json   StageResultFile   best epoch, validation, history, test evaluations
    <run_dir>/results.json    RunResultsFile    stage name -> short summary of each stage of the run
    <run_dir>/dataset.json    RunDatasetFile    number of classes and their names
    <run_dir>/recipe.json     RecipeFile        the ordered stage definitions
    <run_dir>/robustness.json RobustnessFile    Table 3 study (pipeline/robustness.py)

Each class reads files written before the classes existed (no ``format``/``version`` keys) as version 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from modistill.core.schema import VersionedFile

__all__ = [
    "EvaluationFile",
    "RecipeFile",
    "RobustnessFile",
    "RunDatasetFile",
    "RunResultsFile",
    "StageResultFile",
    "StageSpecFile",
]


@dataclass
class StageSpecFile(VersionedFile):
    KIND: ClassVar[str] = "modistill-stage-spec"
    experiment: dict[str, Any]
    stage: dict[str, Any]
    key: str


@dataclass
class StageResultFile(VersionedFile):
    """``test`` and each ``extra`` entry: an evaluation dict (accuracy, per-class, confusion, evaluation name,
    streams, inputs, paper_row)."""

    KIND: ClassVar[str] = "modistill-stage-result"
    stage: str
    title: str
    key: str
    dir: str
    test: dict[str, Any]
    best_epoch: int | None = None
    val: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    paper_row: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResultsFile(VersionedFile):
    """``stages``: stage (or variant) name -> {title, paper_row, dir, best_epoch, test_accuracy, extra}."""

    KIND: ClassVar[str] = "modistill-run-results"
    stages: dict[str, dict[str, Any]]

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "<dict>") -> RunResultsFile:
        if isinstance(data, dict) and "format" not in data and "stages" not in data:
            data = {"stages": data}  # the first layout: the stage mapping itself
        return super().from_dict(data, origin)


@dataclass
class RunDatasetFile(VersionedFile):
    KIND: ClassVar[str] = "modistill-run-dataset"
    num_classes: int
    class_names: list[str] | None = None


@dataclass
class RecipeFile(VersionedFile):
    KIND: ClassVar[str] = "modistill-recipe"
    stages: list[dict[str, Any]]

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<dict>") -> RecipeFile:
        if isinstance(data, list):
            data = {"stages": data}  # the first layout: the bare list
        return super().from_dict(data, origin)


@dataclass
class EvaluationFile(VersionedFile):
    """``modistill eval --out FILE``: one stage evaluated on one split (``metrics``: accuracy, per-class
    accuracy, confusion matrix, counts)."""

    KIND: ClassVar[str] = "modistill-evaluation"
    stage: str
    split: str
    evaluation: str
    metrics: dict[str, Any]


@dataclass
class RobustnessFile(VersionedFile):
    """Table 3 (docs/recipes.md): accuracy of the step-2 teacher under each depth-noise level and void depth."""

    KIND: ClassVar[str] = "modistill-robustness"
    stage: str
    sigma2: list[float]
    accuracy: list[float]
    void: float | None
    seed: int = 0
    rgb_final: float | None = None
    # How the levels were read (pipeline/robustness.py); files written before these fields read as the
    # former behaviour, v as a variance and unclipped.
    reading: str = "variance"
    clip: bool = False
    unknown_fields: dict[str, Any] = field(default_factory=dict)
