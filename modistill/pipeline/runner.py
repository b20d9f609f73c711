"""Runs a staged recipe: builds each stage's network, hands weights over, trains with the engine, evaluates.

Stage folders are content-addressed: ``<out_dir>/stages/<stage>-<key>``, where the key hashes the stage's
definition, the keys of the stages it takes weights from, and the data / model / training settings. A stage
whose folder holds ``result.json`` is reused, so ablation variants that share steps (and re-runs of the demo)
train each distinct stage once. A killed stage resumes with ``resume=True`` from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import Dataset

from modistill.core.config import dump_yaml, to_dict
from modistill.core.digest import file_digest
from modistill.distill.terms import compute_loss
from modistill.engine import distributed as D
from modistill.engine.checkpoint import save_checkpoint
from modistill.engine.config import TrainConfig
from modistill.engine.evaluate import eval_kwargs, evaluate
from modistill.engine.seeding import derive_seed
from modistill.engine.trainer import train_stage
from modistill.engine.utils import resolve_device
from modistill.models.multistream import MultiStreamNet, StandIn, StreamSpec
from modistill.models.pretrained import load_pretrained
from modistill.recipes.experiment import ExperimentConfig, build_recipe
from modistill.recipes.stages import PRETRAINED, Evaluation, Stage, stage_identity, stage_to_dict

from .files import RecipeFile, RunDatasetFile, RunResultsFile, StageResultFile, StageSpecFile
from .handover import init_from_stages as _init_from_stages
from .handover import set_standins

__all__ = [
    "PlannedStage",
    "plan_recipe",
    "DatasetFactory",
    "StageRun",
    "run_recipe",
    "build_network",
    "stage_dir",
    "predictor",
    "load_stage_model",
]

log = logging.getLogger("modistill.recipes")

# (split, modalities, train) -> Dataset of item dicts (docs/ARCHITECTURE.md)
DatasetFactory = Callable[[str, tuple[str, ...], bool], Dataset]

# Settings that change how a run looks, not what it computes: left out of stage keys.
_NON_SEMANTIC = ("progress", "log_every", "num_workers", "device", "tensorboard", "eval_batch_size", "compile")
_MODALITY_CHANNELS = {"rgb": 3, "depth": 3, "flow": 2}


@dataclass
class StageRun:
    stage: Stage
    key: str
    dir: Path
    result: dict[str, Any]
    reused: bool


def stage_train_config(exp: ExperimentConfig, stage: Stage) -> TrainConfig:
    """``exp.train`` with this stage's epoch / lr overrides."""
    cfg = dataclasses.replace(exp.train)
    if stage.name in exp.stage_epochs:
        cfg.epochs = exp.stage_epochs[stage.name]
    if stage.name in exp.stage_lr:
        cfg.lr = exp.stage_lr[stage.name]
    cfg.validate()
    return cfg


def _key(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def stage_key(exp: ExperimentConfig, stage: Stage, dep_keys: dict[str, str]) -> str:
    train = {k: v for k, v in to_dict(stage_train_config(exp, stage)).items() if k not in _NON_SEMANTIC}
    data = to_dict(exp.data)
    data["cache"] = _cache_identity(data["cache"])
    model = to_dict(exp.model)
    model["pretrained"] = _pretrained_identity(exp.model.pretrained)
    return _key(
        {
            "stage": stage_identity(stage),
            "input_channels": exp.recipe.input_channels(),
            "deps": dep_keys,
            "data": data,
            "model": model,
            "train": train,
        }
    )


def _cache_identity(path: str) -> str:
    """What identifies a prepared cache in stage keys: its settings file, not its location (run folders and
    caches can move without invalidating trained stages)."""
    if not path:
        return ""
    cfg = Path(path) / "cache_config.json"
    text = cfg.read_text() if cfg.is_file() else str(Path(path).resolve())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pretrained_identity(pretrained: str | dict[str, str] | None) -> str | dict[str, str] | None:
    """What identifies ``model.pretrained`` in stage keys: each checkpoint's content, not its path. Keyed on
    the path, a checkpoint replaced in place would have reused stages trained from the old weights, and the
    same file under another path re-trained everything. A path that is not a file stays as written (the
    stage then fails to load it, naming it)."""
    if isinstance(pretrained, dict):
        return {m: file_digest(p) for m, p in sorted(pretrained.items())}
    return file_digest(pretrained) if pretrained else pretrained


def stage_dir(exp: ExperimentConfig, stage: Stage, key: str) -> Path:
    root = Path(exp.stage_root) if exp.stage_root else Path(exp.out_dir) / "stages"
    return root / f"{stage.name}-{key}"


def stream_spec(exp: ExperimentConfig, modality: str, in_channels: dict[str, int] | None = None) -> StreamSpec:
    """The architecture of a stream reading ``modality`` under ``exp.model``."""
    chans = {**_MODALITY_CHANNELS, **exp.recipe.input_channels(), **(in_channels or {})}
    return StreamSpec(backbone=exp.model.backbone, modality=modality, width=exp.model.width,
                      in_channels=chans.get(modality, 3), temporal=exp.model.temporal)


def build_network(
    exp: ExperimentConfig, stage: Stage, num_classes: int, in_channels: dict[str, int] | None = None
) -> MultiStreamNet:
    """The stage's :class:`MultiStreamNet` with fresh (or ImageNet, for ``pretrained`` inits) weights."""
    net = MultiStreamNet(
        {s.name: stream_spec(exp, s.modality, in_channels) for s in stage.streams},
        num_classes=num_classes,
        connections=stage.connections,
        fuse=stage.fuse,
        fusion=stage.fusion,
        fusion_options=dict(stage.fusion_options) or None,
        channels_last=exp.model.channels_last,
        standins=[StandIn(sd.target, sd.stages, sd.variant, sd.mode == "learned")  # type: ignore[arg-type]
                  for sd in stage.standins],
    )
    for s in stage.streams:
        path = exp.model.pretrained_for(s.modality) if s.init == PRETRAINED else None
        if path:
            load_pretrained(net.streams[s.name], path)
    return net


def init_seed(seed: int, stage_name: str) -> int:
    """The torch seed a stage's fresh weights are drawn with: a function of ``(train.seed, stage name)`` only,
    not of what ran earlier in the process, so a stage (one key) trains the same whether it runs alone, after
    other stages, or in another process."""
    return derive_seed(seed, int(hashlib.sha256(stage_name.encode()).hexdigest()[:8], 16))


def predictor(
    ev: Evaluation, transform: Callable[[dict], dict] | None = None
) -> Callable[[nn.Module, dict], Tensor]:
    """``predict_fn`` running ``ev.streams`` on ``ev.inputs`` only (optionally perturbing the batch first); the
    prediction is their fusion, or the video logits of ``ev.output`` computed in that joint graph."""

    def predict(model: nn.Module, batch: dict) -> Tensor:
        inputs = {k: batch[k] for k in ev.inputs}
        if transform is not None:
            inputs = transform(inputs)
        out = model(inputs, streams=ev.streams)
        return out.logits if ev.output is None else out.streams[ev.output].video_logits

    return predict


def _loss_fn(stage: Stage) -> Callable[[nn.Module, dict], tuple[Tensor, dict[str, Tensor]]]:
    names = tuple(s.name for s in stage.streams)

    def loss(model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        out = model({k: batch[k] for k in stage.inputs}, streams=names)
        return compute_loss(stage.loss, out, batch["label"])

    return loss


def load_stage_model(exp: ExperimentConfig, run: StageRun, num_classes: int) -> MultiStreamNet:
    """The stage's network with its best weights (for evaluation, robustness, export)."""
    net = build_network(exp, run.stage, num_classes)
    net.load_state_dict(load_file(str(run.dir / "checkpoints" / "best.safetensors")), strict=True)
    return net.eval()


def _eval_dict(
    net: nn.Module, ev: Evaluation, data: Dataset, exp: ExperimentConfig, tcfg: TrainConfig, num_classes: int
) -> dict[str, Any]:
    kw = eval_kwargs(tcfg, clips_per_video=exp.data.clips_per_video, num_classes=num_classes, progress=False)
    net.to(resolve_device(tcfg.device, int(os.environ.get("LOCAL_RANK", 0))))  # before training it may be elsewhere
    d = evaluate(net, predictor(ev), data, **kw).to_dict()
    d.update(evaluation=ev.name, streams=list(ev.streams), inputs=list(ev.inputs), paper_row=ev.paper_row,
             output=ev.output, weights=ev.weights)
    return d


@dataclass(frozen=True)
class PlannedStage:
    """A recipe stage with its content key and folder (where its checkpoints and ``result.json`` live)."""

    stage: Stage
    key: str
    dir: Path

    def finished(self) -> StageRun | None:
        """The stage's result when it has finished (``result.json`` exists), else None."""
        f = self.dir / "result.json"
        if not f.is_file():
            return None
        return StageRun(self.stage, self.key, self.dir, StageResultFile.read(f).to_dict(), reused=True)


def plan_recipe(exp: ExperimentConfig) -> dict[str, PlannedStage]:
    """Stage name -> :class:`PlannedStage` for every stage of ``exp``'s recipe, in order. Each key covers the
    keys of the stages it takes weights from, so changing an early stage re-keys everything after it."""
    keys: dict[str, str] = {}
    plan: dict[str, PlannedStage] = {}
    for st in build_recipe(exp.recipe):
        keys[st.name] = stage_key(exp, st, {d: keys[d] for d in st.depends_on})
        plan[st.name] = PlannedStage(st, keys[st.name], stage_dir(exp, st, keys[st.name]))
    return plan


def _handed_over(
    exp: ExperimentConfig, stage: Stage, dirs: dict[str, Path], datasets: DatasetFactory, num_classes: int,
    tcfg: TrainConfig,
) -> tuple[MultiStreamNet, dict[str, Any]]:
    """The stage's network before training: fresh weights drawn with the stage's seed, the earlier stages'
    weights handed over, frozen streams frozen, stand-ins set; and what the hand-over recorded (``info``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(tcfg.seed, stage.name))
        net = build_network(exp, stage, num_classes)
    _init_from_stages(net, stage, dirs)
    for name in stage.frozen:
        net.freeze(name)
    info: dict[str, Any] = {}
    if stage.standins:
        info["standins"] = set_standins(
            net, stage, dirs, lambda m: stream_spec(exp, m), datasets, num_classes,
            batch_size=eval_kwargs(tcfg)["batch_size"], device=tcfg.device)
    return net, info


def run_stage(
    exp: ExperimentConfig,
    stage: Stage,
    key: str,
    dirs: dict[str, Path],
    datasets: DatasetFactory,
    num_classes: int,
    resume: bool,
) -> StageRun:
    out = stage_dir(exp, stage, key)
    result_file = out / "result.json"
    done = PlannedStage(stage, key, out).finished()
    if done is not None:
        if D.is_main():
            log.info("%s: reusing %s", stage.name, out)
        return done
    tcfg = stage_train_config(exp, stage)
    net, info = _handed_over(exp, stage, dirs, datasets, num_classes, tcfg)
    test_sets: dict[tuple[str, ...], Dataset] = {}

    def test_eval(ev: Evaluation) -> dict[str, Any]:
        if ev.inputs not in test_sets:
            test_sets[ev.inputs] = datasets("test", ev.inputs, False)
        return _eval_dict(net, ev, test_sets[ev.inputs], exp, tcfg, num_classes)

    # Evaluations of the handed-over weights (e.g. the step-4 model before fine-tuning), before any training.
    init_evals = {ev.name: test_eval(ev) for ev in stage.extra if ev.weights == "init"}
    train_set = datasets("train", stage.inputs, True)
    val_set = datasets("val", stage.inputs, False)
    cfg_dict = {"experiment": to_dict(exp), "stage": stage_to_dict(stage), "key": key}
    if D.is_main():
        out.mkdir(parents=True, exist_ok=True)
        StageSpecFile(**cfg_dict).write(out / "stage.json")
    sr = train_stage(
        net,
        loss_fn=_loss_fn(stage),
        predict_fn=predictor(stage.evaluate),
        train_set=train_set,
        val_set=val_set if len(val_set) else None,
        cfg=tcfg,
        run_dir=out,
        config_dict=cfg_dict,
        resume=resume or (out / "checkpoints" / "last.json").exists(),
        num_classes=num_classes,
        stage=stage.name,
        val_clips_per_video=exp.data.clips_per_video,
    )
    if D.is_main() and not sr.best_checkpoint.is_file():
        # Zero epochs (stage_epochs {name: 0}): the handed-over weights are the stage's result; later stages,
        # evaluation and export read them from best.safetensors like any other stage's.
        save_checkpoint(
            out / "checkpoints" / "best", net, None, {"kind": "best", "stage": stage.name, "epoch": 0}
        )
    D.barrier()
    result = StageResultFile(**{
        "stage": stage.name,
        "title": stage.title,
        "paper_row": stage.paper_row,
        "key": key,
        "dir": str(out),
        "best_epoch": sr.best_epoch,
        "val": sr.best_val,
        "history": sr.history,
        "test": test_eval(stage.evaluate),
        "extra": {ev.name: init_evals[ev.name] if ev.weights == "init" else test_eval(ev) for ev in stage.extra},
        "info": info,
    })
    if D.is_main():
        result.write(result_file)
    D.barrier()
    return StageRun(stage, key, out, result.to_dict(), reused=False)


def run_recipe(
    exp: ExperimentConfig,
    datasets: DatasetFactory,
    num_classes: int,
    *,
    only: Sequence[str] | None = None,
    resume: bool = False,
    class_names: Sequence[str] | None = None,
) -> dict[str, StageRun]:
    """Run the recipe's stages in order (``only``: a subset; the stages they need must be done or listed).

    Returns stage name -> :class:`StageRun`. Writes ``<out_dir>/config.yaml`` and ``<out_dir>/results.json``.
    """
    plan = plan_recipe(exp)
    stages = [p.stage for p in plan.values()]
    names = list(plan)
    wanted = set(names if only is None else only)
    unknown = wanted - set(names)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; the recipe has {names}")
    out_dir = Path(exp.out_dir)
    # Join the group now under torchrun: until one exists `is_main()` is true on every rank (see `D.job`).
    D.init_distributed(exp.train.device)
    if D.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(exp, out_dir / "config.yaml")
        RunDatasetFile(num_classes, list(class_names) if class_names else None).write(out_dir / "dataset.json")
        RecipeFile([stage_to_dict(s) for s in stages]).write(out_dir / "recipe.json")
    dirs = {n: p.dir for n, p in plan.items()}
    runs: dict[str, StageRun] = {}
    for st in stages:
        if st.name not in wanted:
            done = plan[st.name].finished()
            if done is not None:
                runs[st.name] = done
            continue
        missing = [d for d in st.depends_on if d not in runs]
        if missing:
            raise RuntimeError(
                f"stage {st.name!r} needs {missing} first (run them, or include them in --stage)"
            )
        runs[st.name] = run_stage(exp, st, plan[st.name].key, dirs, datasets, num_classes, resume)
        if D.is_main():  # every rank holds the result; one line, from rank 0
            acc = runs[st.name].result["test"]["accuracy"]
            log.info("%s: test accuracy %.4f (%s)", st.name, acc, runs[st.name].dir)
    if D.is_main():
        RunResultsFile({n: _summary(r) for n, r in runs.items()}).write(out_dir / "results.json")
    return runs


def _summary(run: StageRun) -> dict[str, Any]:
    """A stage's line in ``results.json``."""
    r = run.result
    return {k: r.get(k) for k in ("title", "paper_row", "dir", "best_epoch")} | {
        "test_accuracy": r["test"]["accuracy"],
        "extra": {k: v["accuracy"] for k, v in r.get("extra", {}).items()},
    }


def add_result(run_dir: Path, name: str, run: StageRun) -> None:
    """Add a stage run from elsewhere (e.g. a variant's step 3) to ``run_dir/results.json`` under ``name``."""
    if not D.is_main():
        return
    path = Path(run_dir) / "results.json"
    results = RunResultsFile.read(path)
    results.stages[name] = _summary(run)
    results.write(path)
