"""One training loop for every stage: any device, bf16 autocast, clipping, DDP, checkpoints, exact resume.

The loop knows nothing about models or losses: a stage is a model plus
  loss_fn(model, batch) -> (scalar loss, {name: scalar part})   with the DDP-wrapped model, in train mode
  predict_fn(model, batch) -> (B, K) video logits               with the unwrapped model, in eval mode
where `batch` is the collated dict already on the device.
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

from modistill.engine import distributed as D
from modistill.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    read_checkpoint_meta,
    save_checkpoint,
    to_jsonable,
    unwrap_model,
    write_text_atomic,
)
from modistill.engine.config import TrainConfig
from modistill.engine.evaluate import evaluate
from modistill.engine.metrics_log import LossMeter, MetricsLogger
from modistill.engine.optim import build_optimizer, lr_factor, select_params
from modistill.engine.seeding import (
    MAIN,
    WorkerSeeder,
    capture_rng_state,
    derive_seed,
    deterministic_mode,
    epoch_generator,
    restore_rng_state,
    seed_all,
)
from modistill.engine.utils import autocast_ctx, batch_size_of, move_to_device, resolve_device

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
    info = D.init_distributed(cfg.device)
    rank, world = info.rank, info.world_size
    dev = resolve_device(cfg.device, info.local_rank)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} (global) is not divisible by the {world} processes")
    per_rank_bs = cfg.batch_size // world
    eval_bs = max(1, (cfg.eval_batch_size or cfg.batch_size) // world)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    last_base, best_base = ckpt_dir / "last", ckpt_dir / "best"
    last_json, best_json = ckpt_dir / "last.json", ckpt_dir / "best.json"
    if len(train_set) == 0:  # type: ignore[arg-type]
        raise ValueError(f"training set {type(train_set).__name__} is empty")
    if not resume and (last_json.exists() or best_json.exists()):
        raise FileExistsError(f"{ckpt_dir} already holds checkpoints: pass resume=True or use a new run_dir")

    model.to(dev)
    groups, flat_params = select_params(model, params)
    optimizer = build_optimizer(cfg, groups)
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])

    start_epoch, global_step = 0, 0
    history: list[dict[str, Any]] = []
    best = {"metric": cfg.select_metric, "value": None, "epoch": None, "val": None}
    if resume:
        if last_json.exists():
            # Hyperparameters come from the current config (the drift warning below says when they changed);
            # only the optimizer's running state (moments, step counts) comes from the checkpoint.
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
            meta = load_checkpoint(last_base, model, optimizer, strict=True)
            for g, hyper in zip(optimizer.param_groups, fresh):
                g.update(hyper)
            start_epoch, global_step = int(meta["epoch"]), int(meta["global_step"])
            history, best = list(meta.get("history", [])), dict(meta["best"])
            if best.get("metric") != cfg.select_metric:  # values of another metric cannot be compared
                best = {"metric": cfg.select_metric, "value": None, "epoch": None, "val": None}
            restore_rng_state(meta["rng"])
            _warn_config_drift(meta.get("train_config", {}), cfg)
            if D.is_main():
                log.info(
                    "%s: resuming after epoch %d (step %d) from %s",
                    stage,
                    start_epoch,
                    global_step,
                    last_json,
                )
        elif last_base.with_name("last.safetensors").exists():
            raise CheckpointError(
                f"{last_json}: missing while last.safetensors exists (a checkpoint write was interrupted); "
                "remove the checkpoints folder to start over"
            )

    logger = MetricsLogger(
        run_dir, enabled=D.is_main(), tensorboard=cfg.tensorboard, purge_step=global_step if resume else None
    )
    if resume:
        logger.truncate_after(stage, start_epoch)
    if D.is_main():
        run_cfg = {"stage": stage, "world_size": world, "train": cfg.to_dict(), "config": config_dict}
        write_text_atomic(run_dir / "run_config.json", _dumps(run_cfg))
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=cfg.find_unused_parameters,
        )

    def ckpt_meta(kind: str, epoch: int) -> dict[str, Any]:
        return {
            "kind": kind,
            "stage": stage,
            "epoch": epoch,
            "global_step": global_step,
            "scheduler": {
                "type": "multistep",
                "milestones": list(cfg.lr_milestones),
                "gamma": cfg.lr_gamma,
                "initial_lrs": [g["initial_lr"] for g in optimizer.param_groups],
                "next_epoch": epoch,
            },
            "rng": capture_rng_state(),
            "best": best,
            "history": history,
            "world_size": world,
            "train_config": cfg.to_dict(),
            "config": config_dict,
        }

    try:
        with deterministic_mode(cfg.deterministic):
            for epoch in range(start_epoch, cfg.epochs):
                for g in optimizer.param_groups:
                    g["lr"] = g["initial_lr"] * lr_factor(cfg, epoch)
                # Epoch randomness depends on (seed, epoch, rank) only: the key to exact resume.
                seed_all(derive_seed(cfg.seed, epoch, rank, MAIN))
                sampler = DistributedSampler(
                    train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=False
                )
                sampler.set_epoch(epoch)
                if hasattr(train_set, "set_epoch"):
                    train_set.set_epoch(epoch)
                loader = DataLoader(
                    train_set,
                    batch_size=per_rank_bs,
                    sampler=sampler,
                    num_workers=cfg.num_workers,
                    collate_fn=collate_fn,
                    pin_memory=dev.type == "cuda",
                    drop_last=cfg.drop_last,
                    worker_init_fn=WorkerSeeder(cfg.seed, epoch, rank),
                    generator=epoch_generator(cfg.seed, epoch, rank),
                )
                if len(loader) == 0:
                    raise ValueError(
                        f"{stage}: no full training batch (drop_last with {len(train_set)} samples)"
                    )
                net.train()
                epoch_meter, window = LossMeter(), LossMeter()
                lr_now = optimizer.param_groups[0]["lr"]
                bar = tqdm(
                    loader,
                    desc=f"{stage} {epoch + 1}/{cfg.epochs}",
                    disable=not (cfg.progress and D.is_main()),
                    dynamic_ncols=True,
                    leave=False,
                )
                for batch in bar:
                    batch = move_to_device(batch, dev)
                    n = batch_size_of(batch, label_key)
                    with autocast_ctx(dev, cfg.amp):
                        loss, parts = loss_fn(net, batch)
                    if not isinstance(loss, Tensor) or loss.ndim != 0:
                        raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}")
                    if not bool(torch.isfinite(loss)):
                        shown = {k: float(v) for k, v in parts.items()}
                        raise FloatingPointError(
                            f"{stage}: non-finite loss {loss.item()} at epoch {epoch + 1}, "
                            f"step {global_step + 1}; parts {shown}"
                        )
                    net.zero_grad(set_to_none=True)
                    loss.backward()
                    gnorm = None
                    if cfg.grad_clip is not None:
                        gnorm = torch.nn.utils.clip_grad_norm_(flat_params, cfg.grad_clip)
                    optimizer.step()
                    global_step += 1
                    epoch_meter.add(loss, parts, n, gnorm)
                    window.add(loss, parts, n, gnorm)
                    if global_step % cfg.log_every == 0:
                        rec = window.reduce(dev)
                        logger.log(
                            {
                                "stage": stage,
                                "kind": "step",
                                "epoch": epoch + 1,
                                "step": global_step,
                                "lr": lr_now,
                                **rec,
                            }
                        )
                        bar.set_postfix(
                            loss=f"{rec['loss']:.4f}", lr=f"{lr_now:.2e}", sps=f"{rec['samples_per_s']:.1f}"
                        )
                        window = LossMeter()
                bar.close()
                record: dict[str, Any] = {
                    "stage": stage,
                    "kind": "epoch",
                    "epoch": epoch + 1,
                    "step": global_step,
                    "lr": lr_now,
                    **epoch_meter.reduce(dev),
                }
                record["time_s"] = time.perf_counter() - epoch_meter.t0
                improved = False
                D.broadcast_buffers(model)  # all ranks validate (and resume from) rank 0's saved model
                if val_set is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                    res = evaluate(
                        unwrap_model(net),
                        predict_fn,
                        val_set,
                        batch_size=eval_bs,
                        device=dev,
                        num_classes=num_classes,
                        clips_per_video=val_clips_per_video,
                        amp=cfg.amp,
                        num_workers=cfg.num_workers,
                        label_key=label_key,
                        collate_fn=collate_fn,
                        progress=cfg.progress,
                    )
                    metrics = res.metrics()
                    if cfg.select_metric not in metrics:
                        raise ValueError(
                            f"select_metric {cfg.select_metric!r} is not one of {sorted(metrics)}"
                        )
                    record["val"] = {k: v for k, v in res.to_dict().items() if k != "confusion"}
                    value = metrics[cfg.select_metric]
                    improved = best["value"] is None or (not math.isnan(value) and value > best["value"])
                    if improved:
                        best = {
                            "metric": cfg.select_metric,
                            "value": value,
                            "epoch": epoch + 1,
                            "val": record["val"],
                        }
                elif val_set is None:
                    improved = True
                    best = {"metric": cfg.select_metric, "value": None, "epoch": epoch + 1, "val": None}
                record["best"] = improved
                history.append(record)
                logger.log(record)
                if D.is_main():
                    # Without validation "best" is simply the final epoch: written once, after the loop.
                    if improved and val_set is not None:
                        save_checkpoint(best_base, model, None, ckpt_meta("best", epoch + 1))
                    save_checkpoint(last_base, model, optimizer, ckpt_meta("last", epoch + 1))
                    _log_epoch(stage, record, cfg)
                D.barrier()
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, record)
    finally:
        logger.close()

    final_epoch = max(start_epoch, cfg.epochs)
    if val_set is None and D.is_main() and last_json.exists():
        if not best_json.exists() or read_checkpoint_meta(best_base).get("epoch") != final_epoch:
            # The model holds the final weights here (trained, or loaded from `last` by a resume).
            save_checkpoint(best_base, model, None, ckpt_meta("best", final_epoch))
    D.barrier()
    if restore_best and best_json.exists():
        load_weights(
            best_base.with_name("best.safetensors"),
            model,
            strict=True,
            token=read_checkpoint_meta(best_base)["token"],
        )
    return StageResult(
        stage=stage,
        run_dir=run_dir,
        epochs_completed=final_epoch if last_json.exists() else 0,
        global_step=global_step,
        select_metric=cfg.select_metric,
        best_epoch=best["epoch"],
        best_metric=best["value"],
        best_val=best["val"],
        best_checkpoint=best_base.with_name("best.safetensors"),
        last_checkpoint=last_base.with_name("last.safetensors"),
        history=history,
    )


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(to_jsonable(obj), indent=1, allow_nan=True)


def _warn_config_drift(saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Resuming with different optimisation settings is allowed (e.g. more epochs) but worth a warning."""
    harmless = {"epochs", "progress", "log_every", "num_workers", "tensorboard", "device", "eval_batch_size"}
    now = cfg.to_dict()
    changed = sorted(k for k in now if k not in harmless and k in saved and saved[k] != now[k])
    if changed and D.is_main():
        log.warning("resuming with changed settings %s: the run will not replay the original one", changed)


def _log_epoch(stage: str, record: dict[str, Any], cfg: TrainConfig) -> None:
    val = record.get("val")
    msg = f"{stage} epoch {record['epoch']}/{cfg.epochs}: loss {record['loss']:.4f}"
    if val:
        msg += f", val {cfg.select_metric} {val.get(cfg.select_metric, float('nan')):.4f}"
        msg += " (best)" if record.get("best") else ""
    log.info(msg)
