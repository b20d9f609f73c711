"""Opening an experiment: its config, its datasets, and the trained stages of a finished run folder.

Shared by the CLI commands (train, eval, robustness, export, predict, demo) so each stays a thin wrapper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from modistill.core.config import load_config
from modistill.recipes.experiment import ExperimentConfig

from .files import RunDatasetFile
from .runner import StageRun, load_stage_model, plan_recipe

__all__ = ["load_experiment", "cache_datasets", "open_run", "RunHandle"]


def load_experiment(source: str | Path | dict | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from YAML (or a dict) plus dotted overrides; errors name file and key."""
    return load_config(ExperimentConfig, source, list(overrides))


def cache_datasets(exp: ExperimentConfig):
    """``(factory, num_classes, class_names)`` for the prepared cache named by ``exp.data.cache``.

    The factory builds :class:`~modistill.data.dataset.CachedClipDataset` splits under ``exp.data.protocol``
    with the paper's sampling: ``exp.data.frames`` frames, training-mode sampling and flips on the train split.
    """
    from modistill.data.dataset import CachedClipDataset

    if not exp.data.cache:
        raise ValueError("data.cache is empty: point it at a folder written by `modistill prepare`")
    root = Path(exp.data.cache)
    built: dict[tuple[str, tuple[str, ...], bool], Dataset] = {}

    def factory(split: str, modalities: tuple[str, ...], train: bool) -> Dataset:
        key = (split, tuple(modalities), train)
        if key not in built:
            clips = 1 if train else exp.data.clips_per_video
            ds = CachedClipDataset(
                root,
                split=split,
                protocol=exp.data.protocol,
                frames=exp.data.frames,
                train=train,
                modalities=tuple(modalities),
                seed=exp.train.seed,
                clips_per_video=clips,
                output="uint8",  # normalised on the training device by the engine (device_transform)
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

    def model(self, stage: str):
        if stage not in self.stages:
            raise KeyError(
                f"{self.dir}: stage {stage!r} has no result (finished stages: {sorted(self.stages)})"
            )
        return load_stage_model(self.exp, self.stages[stage], self.num_classes)

    def result(self, stage: str) -> dict[str, Any]:
        return self.stages[stage].result


def open_run(run_dir: str | Path, overrides: Sequence[str] = ()) -> RunHandle:
    """Open ``run_dir`` (an experiment out_dir): reads its ``config.yaml`` and finds finished stages."""
    run_dir = Path(run_dir)
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{run_dir}: no config.yaml (not a run folder written by `modistill train`)")
    exp = load_experiment(cfg_file, overrides)
    exp.out_dir = str(run_dir)  # the folder may have moved since training
    stages: dict[str, StageRun] = {}
    for name, planned in plan_recipe(exp).items():
        done = planned.finished()
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
