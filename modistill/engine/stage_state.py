"""The state of one stage's training: set up fresh or resumed from `checkpoints/last`, and what a checkpoint
records of it. `trainer.train_stage` is the loop over this state."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from modistill.core.atomic import remove_stale_temps
from modistill.core.errors import UsageError
from modistill.engine import distributed as D
from modistill.engine.checkpoint import CheckpointError, load_checkpoint
from modistill.engine.config import TrainConfig
from modistill.engine.files import RunConfigFile
from modistill.engine.metrics_log import MetricsLogger
from modistill.engine.optim import build_optimizer, select_params
from modistill.engine.seeding import capture_rng_state, restore_rng_state
from modistill.engine.serial import to_jsonable
from modistill.engine.utils import match_memory_format, match_optimizer_state_layout, resolve_device

log = logging.getLogger("modistill.engine")


def no_best(metric: str) -> dict[str, Any]:
    """The `best` record before any epoch was selected."""
    return {"metric": metric, "value": None, "epoch": None, "val": None}


@dataclass
class StageState:
    """Everything `train_stage` carries from one epoch to the next (and saves in `checkpoints/last`).

    `model` is the caller's module (what is saved and loaded); `net` is what the loss sees (DDP-wrapped when
    there are several processes). `start_epoch` = completed epochs when the run (re)started; `global_step` =
    optimizer steps so far; `best` = {metric, value, epoch, val} of the selected epoch."""

    cfg: TrainConfig
    stage: str
    run_dir: Path
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    flat_params: list[nn.Parameter]
    device: torch.device
    rank: int
    world: int
    config_dict: dict | None
    logger: MetricsLogger | None = None
    start_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)

    @property
    def per_rank_batch(self) -> int:
        return self.cfg.batch_size // self.world

    @property
    def last_base(self) -> Path:
        return self.run_dir / "checkpoints" / "last"

    @property
    def best_base(self) -> Path:
        return self.run_dir / "checkpoints" / "best"

    @property
    def last_json(self) -> Path:
        return self.run_dir / "checkpoints" / "last.json"

    @property
    def best_json(self) -> Path:
        return self.run_dir / "checkpoints" / "best.json"

    def checkpoint_meta(self, kind: str, epoch: int) -> dict[str, Any]:
        """The trainer's part of a checkpoint sidecar (`files.CheckpointMeta.unknown_fields`), RNG states as of now."""
        cfg = self.cfg
        return {
            "kind": kind,
            "stage": self.stage,
            "epoch": epoch,
            "global_step": self.global_step,
            "scheduler": {
                "type": "multistep",
                "milestones": list(cfg.lr_milestones),
                "gamma": cfg.lr_gamma,
                "initial_lrs": [g["initial_lr"] for g in self.optimizer.param_groups],
                "next_epoch": epoch,
            },
            "rng": capture_rng_state(),
            "best": self.best,
            "history": self.history,
            "world_size": self.world,
            "train_config": cfg.to_dict(),
            "config": self.config_dict,
        }


def setup_stage(
    model: nn.Module,
    *,
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    train_set: Dataset,
    params: Iterable[Any] | None,
    resume: bool,
    stage: str,
    config_dict: dict | None,
) -> StageState:
    """Join the process group, check the run folder, build the optimizer, resume if asked, open the logs,
    write run_config.json and wrap the model in DDP under torchrun."""
    info = D.init_distributed(cfg.device)
    dev = resolve_device(cfg.device, info.local_rank)
    if cfg.batch_size % info.world_size:
        raise UsageError(
            f"batch_size {cfg.batch_size} (global) is not divisible by the {info.world_size} processes"
        )
    run_dir = Path(run_dir)
    if len(train_set) == 0:  # type: ignore[arg-type]
        raise UsageError(f"training set {type(train_set).__name__} is empty")
    ckpt_dir = run_dir / "checkpoints"
    if not resume and ((ckpt_dir / "last.json").exists() or (ckpt_dir / "best.json").exists()):
        raise FileExistsError(f"{ckpt_dir} already holds checkpoints: pass resume=True or use a new run_dir")
    if D.is_main():
        remove_stale_temps(run_dir, ["checkpoints"])  # left by a killed checkpoint write on this host

    model.to(dev)
    # Parameters in the layout the model computes in, before the optimizer sees them and before DDP builds its
    # gradient buckets from their strides (see `match_memory_format`).
    match_memory_format(model)
    groups, flat_params = select_params(model, params)
    optimizer = build_optimizer(cfg, groups)
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
    st = StageState(
        cfg=cfg,
        stage=stage,
        run_dir=run_dir,
        model=model,
        net=model,
        optimizer=optimizer,
        flat_params=flat_params,
        device=dev,
        rank=info.rank,
        world=info.world_size,
        config_dict=config_dict,
        best=no_best(cfg.select_metric),
    )
    if resume:
        _resume(st)

    st.logger = MetricsLogger(
        run_dir,
        enabled=D.is_main(),
        tensorboard=cfg.tensorboard,
        purge_step=st.global_step if resume else None,
    )
    try:
        if resume:
            st.logger.truncate_after(stage, st.start_epoch)
        if D.is_main():
            RunConfigFile(stage, st.world, cfg.to_dict(), to_jsonable(config_dict)).write(
                run_dir / "run_config.json"
            )
        if st.world > 1:
            st.net = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[dev.index] if dev.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
        if cfg.compile:
            # Compiling the DDP wrapper lets dynamo split graphs at the gradient buckets (DDPOptimizer);
            # `unwrap_model` sees through both wrappers, so checkpoints and evaluation use the plain module.
            st.net = torch.compile(st.net)
    except BaseException:
        st.logger.close()
        raise
    return st


def _resume(st: StageState) -> None:
    """Continue from `checkpoints/last` (weights, optimizer moments, RNG, best, history); nothing to resume from
    is a fresh start, but tensors without their JSON (an interrupted write) are an error."""
    if not st.last_json.exists():
        if st.last_base.with_name("last.safetensors").exists():
            raise CheckpointError(
                f"{st.last_json}: missing while last.safetensors exists (a checkpoint write was interrupted); "
                "remove the checkpoints folder to start over"
            )
        return
    # Hyperparameters come from the current config (the drift warning below says when they changed);
    # only the optimizer's running state (moments, step counts) comes from the checkpoint.
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in st.optimizer.param_groups]
    meta = load_checkpoint(st.last_base, st.model, st.optimizer, strict=True)
    match_optimizer_state_layout(st.optimizer)
    for g, hyper in zip(st.optimizer.param_groups, fresh):
        g.update(hyper)
    st.start_epoch, st.global_step = int(meta["epoch"]), int(meta["global_step"])
    st.history, st.best = list(meta.get("history", [])), dict(meta["best"])
    if st.best.get("metric") != st.cfg.select_metric:  # values of another metric cannot be compared
        st.best = no_best(st.cfg.select_metric)
    restore_rng_state(meta["rng"])
    _warn_config_drift(meta.get("train_config", {}), st.cfg)
    if D.is_main():
        log.info(
            "%s: resuming after epoch %d (step %d) from %s",
            st.stage,
            st.start_epoch,
            st.global_step,
            st.last_json,
        )


def _warn_config_drift(saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Resuming with different optimisation settings is allowed (e.g. more epochs) but worth a warning."""
    harmless = {
        "epochs", "progress", "log_every", "num_workers", "tensorboard", "device", "eval_batch_size", "compile"
    }  # fmt: skip
    now = cfg.to_dict()
    changed = sorted(k for k in now if k not in harmless and k in saved and saved[k] != now[k])
    if changed and D.is_main():
        log.warning("resuming with changed settings %s: the run will not replay the original one", changed)
