"""Opening an experiment: its config, its datasets, and the trained stages of a finished run folder.

Shared by the CLI commands (train, eval, robustness, export, predict, demo) so each stays a thin wrapper.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from modistill.core.config import load_config
from modistill.core.errors import ModistillError
from modistill.data import cache as C
from modistill.recipes.experiment import ExperimentConfig, RecipeConfig, build_recipe
from modistill.recipes.stages import stage_to_dict

from .files import RunDatasetFile, RunResultsFile, StageResultFile, StageSpecFile
from .runner import PlannedStage, StageRun, load_stage_model, plan_recipe

log = logging.getLogger(__name__)

__all__ = [
    "RunError",
    "RunHandle",
    "cache_datasets",
    "check_cache_modalities",
    "deployed_stage",
    "load_experiment",
    "open_run",
]


class RunError(ModistillError, KeyError):
    """A run folder lacks what was asked of it (e.g. a stage without a result); the message names the run."""

    def __str__(self) -> str:  # KeyError quotes its message; this is a sentence
        return str(self.args[0]) if self.args else ""


def load_experiment(source: str | Path | dict | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from YAML (or a dict) plus dotted overrides; errors name file and key."""
    return load_config(ExperimentConfig, source, list(overrides))


def deployed_stage(recipe: RecipeConfig) -> str:
    """The stage a recipe deploys: its last stage evaluated on RGB alone (every recipe ends with its deployed
    model: ``step4`` for garcia, ``hoffman_<loss>`` for hoffman, ``motion_final`` for motion)."""
    for st in reversed(build_recipe(recipe)):
        if tuple(st.evaluate.inputs) == ("rgb",):
            return st.name
    raise ValueError(f"recipe {recipe.name!r} has no stage evaluated on RGB alone to deploy")


def check_cache_modalities(exp: ExperimentConfig, stages: Sequence[str] | None = None) -> None:
    """Raise `CacheError` naming the cache when it lacks a modality that ``stages`` (default: the whole recipe)
    train or evaluate on, before any training starts (e.g. the depth recipe on an RGB-only cache)."""
    recipe = build_recipe(exp.recipe)
    chosen = [st for st in recipe if stages is None or st.name in stages]
    need: dict[str, list[str]] = {}
    for st in chosen:
        for m in (*st.inputs, *st.evaluate.inputs, *(i for ev in st.extra for i in ev.inputs)):
            need.setdefault(m, []).append(st.name)
    have = C.load_config(exp.data.cache).modalities
    lacking = {m: list(dict.fromkeys(v)) for m, v in need.items() if m not in have}
    if lacking:
        what = "; ".join(f"{m} (stages {', '.join(v)})" for m, v in lacking.items())
        hint = []
        if "depth" in lacking:
            hint.append(
                "the depth recipes need a cache with depth (an RGB-D source); for RGB-only data use "
                "recipe.name=motion with a flow cache"
            )
        if any(m.startswith("flow") for m in lacking):
            hint.append("add flow with `modistill prepare ... --flow`")
        raise C.CacheError(
            f"{Path(exp.data.cache) / C.CONFIG_NAME}: the {exp.recipe.name} recipe needs {what}, but the cache "
            f"holds only {list(have)}" + (f" ({'; '.join(hint)})" if hint else "")
        )


def cache_datasets(exp: ExperimentConfig, stages: Sequence[str] | None = None):
    """``(factory, num_classes, class_names)`` for the prepared cache named by ``exp.data.cache``.

    The factory builds :class:`~modistill.data.dataset.CachedClipDataset` splits under the split rule of
    ``exp.data`` (`DataConfig.split_rule`) with the paper's sampling: ``exp.data.frames`` frames, training-mode
    sampling and flips on the train split. The cache is first checked to hold the modalities of ``stages``
    (default: every stage of the recipe).
    """
    from modistill.data.dataset import CachedClipDataset

    if not exp.data.cache:
        raise ValueError("data.cache is empty: point it at a folder written by `modistill prepare`")
    root = Path(exp.data.cache)
    check_cache_modalities(exp, stages)
    rule = exp.data.split_rule()
    built: dict[tuple[str, tuple[str, ...], bool], Dataset] = {}

    def factory(split: str, modalities: tuple[str, ...], train: bool) -> Dataset:
        key = (split, tuple(modalities), train)
        if key not in built:
            clips = 1 if train else exp.data.clips_per_video
            ds = CachedClipDataset(
                root,
                split=split,
                rule=rule,
                on_missing=exp.data.on_missing,
                frames=exp.data.frames,
                train=train,
                modalities=tuple(modalities),
                seed=exp.train.seed,
                clips_per_video=clips,
                output="uint8",  # normalised on the training device by the engine (device_transform)
            )
            if not any(k[0] == split for k in built):  # once per split: its size and how it was drawn
                notes = "; ".join(getattr(ds, "split_notes", []))
                log.info(
                    "%s: %s split of protocol %s: %d videos%s",
                    root,
                    split,
                    rule.protocol,
                    len(ds.records),
                    f" ({notes})" if notes else "",
                )
            built[key] = StackedClips(ds, clips) if clips > 1 else ds
        return built[key]

    probe = factory("train", ("rgb",), True)
    names = list(probe.config.class_names or [])
    return factory, int(probe.num_classes), names or None


class StackedClips(Dataset):
    """Per-video items from a dataset whose ``clips`` consecutive items are the clips of one video: frame
    tensors (float, or uint8 before the engine applies `device_transform`) gain a leading clip dimension
    ``(N, T, ...)``, the layout the engine's evaluation averages over (engine/utils.py ``fold_clips``)."""

    def __init__(self, base: Dataset, clips: int) -> None:
        if len(base) % clips:
            raise ValueError(f"{type(base).__name__} has {len(base)} items, not a multiple of {clips} clips")
        self.base, self.clips = base, clips
        self.device_transform = getattr(base, "device_transform", None)  # the engine applies it per batch

    def __len__(self) -> int:
        return len(self.base) // self.clips

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict[str, Any]:
        items = [self.base[i * self.clips + c] for c in range(self.clips)]
        out = dict(items[0])
        for k, v in items[0].items():
            if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.dtype == torch.uint8):
                out[k] = torch.stack([it[k] for it in items])
        return out


@dataclass
class RunHandle:
    """A finished (or partly finished) run folder: its config and the stages that have results."""

    dir: Path
    exp: ExperimentConfig
    stages: dict[str, StageRun]
    num_classes: int
    class_names: list[str] | None

    @property
    def deployed_stage(self) -> str:
        """The stage the run's recipe deploys (:func:`deployed_stage`)."""
        return deployed_stage(self.exp.recipe)

    def stage(self, name: str | None = None) -> StageRun:
        """The finished stage ``name`` (default: the deployed one); `RunError` naming the run if unfinished."""
        name = name or self.deployed_stage
        if name not in self.stages:
            known = [st.name for st in build_recipe(self.exp.recipe)]
            why = "has no result" if name in known else f"is not a stage of the {self.exp.recipe.name} recipe"
            raise RunError(
                f"{self.dir}: stage {name!r} {why} (finished stages: {sorted(self.stages) or 'none'})"
            )
        return self.stages[name]

    def model(self, stage: str | None = None):
        return load_stage_model(self.exp, self.stage(stage), self.num_classes)

    def result(self, stage: str | None = None) -> dict[str, Any]:
        return self.stage(stage).result


def _recorded_stage_dirs(run_dir: Path) -> dict[str, str]:
    """Stage name -> the folder the run's ``results.json`` names (as written when it trained)."""
    f = run_dir / "results.json"
    if not f.is_file():
        return {}
    return {
        n: str(e["dir"])
        for n, e in RunResultsFile.read(f).stages.items()
        if isinstance(e, dict) and e.get("dir")
    }


def _recorded_stage(planned: PlannedStage, recorded: str | None) -> StageRun | None:
    """The stage the run trained, found through ``results.json`` when its planned folder is absent: a run
    trained before a change to how stage keys are computed (e.g. `model.pretrained` keyed by content since
    this version) keeps working with `eval`, `export`, `predict`. The folder is looked up by name under
    the planned stage root (runs and stage roots may move) and used only when its ``stage.json`` holds the
    same stage definition as the one planned."""
    if recorded is None:
        return None
    folder = planned.dir.parent / Path(recorded).name
    spec, result = folder / "stage.json", folder / "result.json"
    if not (spec.is_file() and result.is_file()):
        return None
    planned_spec = json.loads(json.dumps(stage_to_dict(planned.stage)))  # as stage.json holds it: lists
    if StageSpecFile.read(spec).stage != planned_spec:
        return None
    log.info(
        "%s: using %s, the folder results.json names (trained under other stage keys)",
        planned.stage.name,
        folder,
    )
    return StageRun(
        planned.stage,
        folder.name.rsplit("-", 1)[-1],
        folder,
        StageResultFile.read(result).to_dict(),
        reused=True,
    )


def open_run(run_dir: str | Path, overrides: Sequence[str] = ()) -> RunHandle:
    """Open ``run_dir`` (an experiment out_dir): reads its ``config.yaml`` and finds finished stages."""
    run_dir = Path(run_dir)
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{run_dir}: no config.yaml (not a run folder written by `modistill train`)")
    exp = load_experiment(cfg_file, overrides)
    exp.out_dir = str(run_dir)  # the folder may have moved since training
    stages: dict[str, StageRun] = {}
    recorded = _recorded_stage_dirs(run_dir)
    for name, planned in plan_recipe(exp).items():
        done = planned.finished() or _recorded_stage(planned, recorded.get(name))
        if done is not None:
            stages[name] = done
    meta_file = run_dir / "dataset.json"
    meta = RunDatasetFile.read(meta_file) if meta_file.is_file() else RunDatasetFile(0)
    num_classes = meta.num_classes or None
    if num_classes is None:
        if not stages:
            raise FileNotFoundError(f"{run_dir}: no finished stage and no dataset.json")
        num_classes = len(next(iter(stages.values())).result["test"]["confusion"])
    return RunHandle(run_dir, exp, stages, int(num_classes), meta.class_names)
