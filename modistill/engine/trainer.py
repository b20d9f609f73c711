"""One training loop for every stage: any device, bf16 autocast, clipping, DDP, checkpoints, exact resume.

The loop knows nothing about models or losses: a stage is a model plus
  loss_fn(model, batch) -> (scalar loss, {name: scalar part})   with the DDP-wrapped model, in train mode
  predict_fn(model, batch) -> (B, K) video logits               with the unwrapped model, in eval mode
where `batch` is the collated dict already on the device.

`train_stage` reads top to bottom like the loop it is: set up (or resume) the stage state, then per epoch
begin it (lr, seeding, loader), train, validate, checkpoint; then finish. Each step is a function below;
the state they share is `stage_state.StageState`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from modistill.core.errors import UsageError
from modistill.engine import distributed as D
from modistill.engine.checkpoint import load_weights, read_checkpoint_meta, save_checkpoint, unwrap_model
from modistill.engine.config import TrainConfig
from modistill.engine.evaluate import eval_kwargs, evaluate
from modistill.engine.metrics_log import LossMeter
from modistill.engine.optim import lr_factor
from modistill.engine.seeding import (
    MAIN,
    WorkerSeeder,
    derive_seed,
    deterministic_mode,
    epoch_generator,
    seed_all,
)
from modistill.engine.stage_state import StageState, setup_stage
from modistill.engine.utils import autocast_ctx, batch_size_of, device_transform_of, move_to_device

log = logging.getLogger("modistill.engine")

LossFn = Callable[[nn.Module, dict], tuple[Tensor, dict[str, Any]]]
PredictFn = Callable[[nn.Module, dict], Tensor]


@dataclass
class StageResult:
    """What `train_stage` leaves behind. Epochs are 1-based; `best_*` refer to validation (or the last epoch
    when there is no validation set). The checkpoint paths are the weights files
    (`run_dir/checkpoints/{best,last}.safetensors`); `load_checkpoint` accepts them as they are."""

    stage: str
    run_dir: Path
    epochs_completed: int
    global_step: int
    select_metric: str
    best_epoch: int | None
    best_metric: float | None
    best_val: dict[str, Any] | None
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)


def train_stage(
    model: nn.Module,
    *,
    loss_fn: LossFn,
    predict_fn: PredictFn,
    train_set: Dataset,
    val_set: Dataset | None,
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    config_dict: dict | None = None,
    resume: bool = False,
    num_classes: int | None = None,
    params: Iterable[Any] | None = None,
    stage: str = "train",
    collate_fn: Callable | None = None,
    label_key: str = "label",
    val_clips_per_video: int = 1,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    restore_best: bool = True,
) -> StageResult:
    """Train `model` for `cfg.epochs` epochs; validate, checkpoint and log as it goes.

    Batches are dicts of `(B, T, C, H, W)` clips plus a `(B,)` label (any collated dict works). `params` are
    what the optimizer updates (default: every parameter with requires_grad); params with requires_grad=False
    are never touched. Validation every `cfg.eval_every` epochs (and after the last) picks the best epoch by
    `cfg.select_metric`; `best` is also saved when `val_set` is None (then it is the last epoch).
    `resume=True` continues from `run_dir/checkpoints/last` (or starts fresh if there is none); a fresh run
    refuses a run_dir that already holds checkpoints. `on_epoch_end(epoch, record)` runs after each epoch's
    checkpoint. On return the model holds the best weights when `restore_best` (else the last ones), on the
    training device. Under torchrun every rank calls this with the same arguments; the process group is set up
    on first use (and left running for the next stage: `distributed.cleanup()` ends it).
    """
    cfg.validate()
    st = setup_stage(
        model,
        cfg=cfg,
        run_dir=run_dir,
        train_set=train_set,
        params=params,
        resume=resume,
        stage=stage,
        config_dict=config_dict,
    )
    val_args = eval_kwargs(
        cfg,
        clips_per_video=val_clips_per_video,
        world_size=st.world,
        device=st.device,
        num_classes=num_classes,
        label_key=label_key,
        collate_fn=collate_fn,
    )
    try:
        with deterministic_mode(cfg.deterministic):
            for epoch in range(st.start_epoch, cfg.epochs):
                loader = begin_epoch(st, epoch, train_set, collate_fn)
                record = run_epoch(st, epoch, loader, loss_fn, label_key)
                improved = validate(st, epoch, record, predict_fn, val_set, val_args)
                end_epoch(st, epoch, record, improved, has_val=val_set is not None)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, record)
    finally:
        st.logger.close()
    return finish(st, has_val=val_set is not None, restore_best=restore_best)


def begin_epoch(st: StageState, epoch: int, train_set: Dataset, collate_fn: Callable | None) -> DataLoader:
    """Set the epoch's lr, re-seed every random source from (seed, epoch, rank) and build a fresh loader.

    Epoch randomness depends on (seed, epoch, rank) only: the key to exact resume.
    """
    cfg = st.cfg
    for g in st.optimizer.param_groups:
        g["lr"] = g["initial_lr"] * lr_factor(cfg, epoch)
    seed_all(derive_seed(cfg.seed, epoch, st.rank, MAIN))
    sampler = DistributedSampler(
        train_set, num_replicas=st.world, rank=st.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    loader = DataLoader(
        train_set,
        batch_size=st.per_rank_batch,
        sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=collate_fn,
        pin_memory=st.device.type == "cuda",
        drop_last=cfg.drop_last,
        worker_init_fn=WorkerSeeder(cfg.seed, epoch, st.rank),
        generator=epoch_generator(cfg.seed, epoch, st.rank),
    )
    if len(loader) == 0:
        raise UsageError(f"{st.stage}: no full training batch (drop_last with {len(train_set)} samples)")
    return loader


def run_epoch(
    st: StageState, epoch: int, loader: DataLoader, loss_fn: LossFn, label_key: str
) -> dict[str, Any]:
    """Train over `loader`, logging a step record every `log_every` steps; return the epoch record."""
    cfg = st.cfg
    st.net.train()
    epoch_meter, window = LossMeter(), LossMeter()
    lr_now = st.optimizer.param_groups[0]["lr"]
    bar = tqdm(
        loader,
        desc=f"{st.stage} {epoch + 1}/{cfg.epochs}",
        disable=not (cfg.progress and D.is_main()),
        dynamic_ncols=True,
        leave=False,
    )
    on_device = device_transform_of(loader.dataset)
    for batch in bar:
        batch = move_to_device(batch, st.device)
        if on_device is not None:  # e.g. uint8 frames -> normalised floats, on the GPU
            batch = on_device(batch)
        n = batch_size_of(batch, label_key)
        loss, parts, gnorm = train_step(st, epoch, batch, loss_fn)
        epoch_meter.add(loss, parts, n, gnorm)
        window.add(loss, parts, n, gnorm)
        if st.global_step % cfg.log_every == 0:
            rec = window.reduce(st.device)
            st.logger.log(
                {
                    "stage": st.stage,
                    "kind": "step",
                    "epoch": epoch + 1,
                    "step": st.global_step,
                    "lr": lr_now,
                    **rec,
                }
            )
            bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr_now:.2e}", sps=f"{rec['samples_per_s']:.1f}")
            window = LossMeter()
    bar.close()
    record: dict[str, Any] = {
        "stage": st.stage,
        "kind": "epoch",
        "epoch": epoch + 1,
        "step": st.global_step,
        "lr": lr_now,
        **epoch_meter.reduce(st.device),
    }
    record["time_s"] = time.perf_counter() - epoch_meter.t0
    return record


def train_step(
    st: StageState, epoch: int, batch: dict, loss_fn: LossFn
) -> tuple[Tensor, dict[str, Any], Tensor | None]:
    """One optimizer step: loss under autocast (a scalar, finite), backward, optional clipping, update.
    Returns (loss, parts, gradient norm before clipping or None)."""
    with autocast_ctx(st.device, st.cfg.amp):
        loss, parts = loss_fn(st.net, batch)
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}")
    if not bool(torch.isfinite(loss)):
        shown = {k: float(v) for k, v in parts.items()}
        raise FloatingPointError(
            f"{st.stage}: non-finite loss {loss.item()} at epoch {epoch + 1}, "
            f"step {st.global_step + 1}; parts {shown}"
        )
    st.net.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = None
    if st.cfg.grad_clip is not None:
        gnorm = torch.nn.utils.clip_grad_norm_(st.flat_params, st.cfg.grad_clip)
    st.optimizer.step()
    st.global_step += 1
    return loss, parts, gnorm


def validate(
    st: StageState,
    epoch: int,
    record: dict[str, Any],
    predict_fn: PredictFn,
    val_set: Dataset | None,
    val_args: dict[str, Any],
) -> bool:
    """Validate when due (adds `record["val"]`) and update `st.best`; True when this epoch is the new best.
    Without a validation set every epoch is the best so far (the last one wins)."""
    cfg = st.cfg
    D.broadcast_buffers(st.model)  # all ranks validate (and resume from) rank 0's saved model
    if val_set is None:
        st.best = {"metric": cfg.select_metric, "value": None, "epoch": epoch + 1, "val": None}
        return True
    if (epoch + 1) % cfg.eval_every != 0 and epoch + 1 != cfg.epochs:
        return False
    res = evaluate(unwrap_model(st.net), predict_fn, val_set, **val_args)
    metrics = res.metrics()
    if cfg.select_metric not in metrics:
        raise UsageError(f"select_metric {cfg.select_metric!r} is not one of {sorted(metrics)}")
    record["val"] = {k: v for k, v in res.to_dict().items() if k != "confusion"}
    value = metrics[cfg.select_metric]
    improved = st.best["value"] is None or (not math.isnan(value) and value > st.best["value"])
    if improved:
        st.best = {"metric": cfg.select_metric, "value": value, "epoch": epoch + 1, "val": record["val"]}
    return improved


def end_epoch(st: StageState, epoch: int, record: dict[str, Any], improved: bool, has_val: bool) -> None:
    """Log the epoch record; rank 0 writes `best` (if improved) and `last`; then all ranks meet."""
    record["best"] = improved
    st.history.append(record)
    st.logger.log(record)
    if D.is_main():
        # Without validation "best" is simply the final epoch: written once, by `finish`.
        if improved and has_val:
            save_checkpoint(st.best_base, st.model, None, st.checkpoint_meta("best", epoch + 1))
        save_checkpoint(st.last_base, st.model, st.optimizer, st.checkpoint_meta("last", epoch + 1))
        _log_epoch(st.stage, record, st.cfg)
    D.barrier()


def finish(st: StageState, has_val: bool, restore_best: bool) -> StageResult:
    """Write `best` of a run without validation, load the best weights if asked, and sum the stage up."""
    final_epoch = max(st.start_epoch, st.cfg.epochs)
    if not has_val and D.is_main() and st.last_json.exists():
        if not st.best_json.exists() or read_checkpoint_meta(st.best_base).get("epoch") != final_epoch:
            # The model holds the final weights here (trained, or loaded from `last` by a resume).
            save_checkpoint(st.best_base, st.model, None, st.checkpoint_meta("best", final_epoch))
    D.barrier()
    best_file = st.best_base.with_name("best.safetensors")
    if restore_best and st.best_json.exists():
        load_weights(best_file, st.model, strict=True, token=read_checkpoint_meta(st.best_base)["token"])
    return StageResult(
        stage=st.stage,
        run_dir=st.run_dir,
        epochs_completed=final_epoch if st.last_json.exists() else 0,
        global_step=st.global_step,
        select_metric=st.cfg.select_metric,
        best_epoch=st.best["epoch"],
        best_metric=st.best["value"],
        best_val=st.best["val"],
        best_checkpoint=best_file,
        last_checkpoint=st.last_base.with_name("last.safetensors"),
        history=st.history,
    )


def _log_epoch(stage: str, record: dict[str, Any], cfg: TrainConfig) -> None:
    val = record.get("val")
    msg = f"{stage} epoch {record['epoch']}/{cfg.epochs}: loss {record['loss']:.4f}"
    if val:
        msg += f", val {cfg.select_metric} {val.get(cfg.select_metric, float('nan')):.4f}"
        msg += " (best)" if record.get("best") else ""
    log.info(msg)
