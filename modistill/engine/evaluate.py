"""Video-level evaluation: accuracy, per-class accuracy, confusion matrix; exact under DDP (pad-free shards).

The model's video logits are already the mean of its frame logits over the sampled frames (REF §1,
"Prediction"); with several clips per video the clip logits are averaged too (logits, not probabilities, as
in the official code). The predicted class is the arg-max (ties go to the lowest class index).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from modistill.engine import distributed as D
from modistill.engine.checkpoint import checkpoint_base, load_checkpoint
from modistill.engine.config import TrainConfig
from modistill.engine.utils import (
    autocast_ctx,
    device_transform_of,
    fold_clips,
    move_to_device,
    resolve_device,
)

PredictFn = Callable[[nn.Module, dict], Tensor]


@dataclass
class EvalResult:
    """Metrics of one evaluation; arrays are numpy, in dataset order.

    accuracy: correct / n; per_class: (K,) recall per true class (NaN for classes absent from the set);
    confusion: (K, K) int64 counts, rows = true class, columns = predicted class; predictions, labels: (n,);
    top5: top-5 accuracy when K > 5 else None; logits: (n, K) video logits when requested, else None.
    """

    accuracy: float
    per_class: np.ndarray
    confusion: np.ndarray
    n: int
    predictions: np.ndarray
    labels: np.ndarray
    top5: float | None = None
    logits: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return int(self.confusion.shape[0])

    @property
    def mean_class_accuracy(self) -> float:
        """Mean of per-class accuracies over the classes present in the set."""
        present = self.per_class[~np.isnan(self.per_class)]
        return float(present.mean()) if present.size else float("nan")

    def metrics(self) -> dict[str, float]:
        """Scalar metrics (the names `TrainConfig.select_metric` may use)."""
        m = {"accuracy": self.accuracy, "mean_class_accuracy": self.mean_class_accuracy, "n": float(self.n)}
        if self.top5 is not None:
            m["top5_accuracy"] = self.top5
        return m

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN per-class entries become None)."""
        d: dict[str, Any] = dict(self.metrics())
        d["n"] = self.n
        d["per_class"] = [None if np.isnan(x) else float(x) for x in self.per_class]
        d["confusion"] = self.confusion.tolist()
        return d


class ShardSampler(Sampler[int]):
    """Indices rank, rank + W, rank + 2W, ... of a dataset: every index exactly once over all ranks
    (no padding, unlike DistributedSampler, so evaluation totals are exact)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def evaluate(
    model: nn.Module,
    predict_fn: PredictFn,
    dataset: Dataset,
    *,
    batch_size: int,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    clips_per_video: int = 1,
    amp: str = "off",
    num_workers: int = 0,
    label_key: str = "label",
    collate_fn: Callable | None = None,
    keep_logits: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Evaluate `predict_fn(model, batch) -> (B*N, K)` logits over `dataset` (N = clips_per_video).

    Items are dicts with an int label under `label_key`; with clips_per_video = N > 1 their floating
    tensors carry a leading clip dimension (see `utils.fold_clips`). `batch_size` is per process. Under
    torch.distributed each rank evaluates its own pad-free shard and the counts are summed, so the metrics
    equal a single-process run's. The model is put in eval mode and its previous mode restored. Pass an
    unwrapped module (not DDP): DDP's forward broadcasts buffers, a collective that would deadlock on shards
    of different lengths.
    """
    if clips_per_video < 1:
        raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
    dev = (
        device
        if isinstance(device, torch.device)
        else resolve_device(device, int(os.environ.get("LOCAL_RANK", 0)))
    )
    n_total = len(dataset)  # type: ignore[arg-type]
    if n_total == 0:
        raise ValueError(f"cannot evaluate on an empty dataset ({type(dataset).__name__})")
    rank, world = D.rank(), D.world_size()
    sampler = ShardSampler(n_total, rank, world)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=dev.type == "cuda",
    )
    on_device = device_transform_of(dataset)
    preds: list[Tensor] = []
    labels: list[Tensor] = []
    logits_kept: list[Tensor] = []
    top5_hits = 0
    k_seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            bar = tqdm(
                loader, desc="eval", leave=False, disable=not (progress and D.is_main()), dynamic_ncols=True
            )
            for batch in bar:
                batch = move_to_device(batch, dev)
                if on_device is not None:  # before clip folding and predict_fn (which expect floats)
                    batch = on_device(batch)
                if not isinstance(batch, Mapping) or label_key not in batch:
                    raise KeyError(f"evaluation batches must be dicts with a '{label_key}' entry")
                y = batch[label_key].reshape(-1).long()
                b = y.shape[0]
                if clips_per_video > 1:
                    batch = fold_clips(batch, clips_per_video, b)
                with autocast_ctx(dev, amp):
                    out = predict_fn(model, batch)
                if out.ndim != 2 or out.shape[0] != b * clips_per_video:
                    raise ValueError(
                        f"predict_fn returned shape {tuple(out.shape)}; expected ({b * clips_per_video}, K) "
                        f"logits for a batch of {b} videos x {clips_per_video} clips"
                    )
                video = out.float().reshape(b, clips_per_video, -1).mean(dim=1)
                k_seen = video.shape[1]
                if num_classes is not None and k_seen != num_classes:
                    raise ValueError(f"predict_fn returned {k_seen} classes, num_classes is {num_classes}")
                if bool(((y < 0) | (y >= k_seen)).any()):
                    bad = y[(y < 0) | (y >= k_seen)][:5].tolist()
                    raise ValueError(f"labels {bad} out of range [0, {k_seen}) in {type(dataset).__name__}")
                preds.append(video.argmax(dim=1).cpu())
                labels.append(y.cpu())
                if k_seen > 5:
                    top = video.topk(5, dim=1).indices
                    top5_hits += int((top == y[:, None]).any(dim=1).sum())
                if keep_logits:
                    logits_kept.append(video.cpu())
    finally:
        model.train(was_training)

    k = num_classes if num_classes is not None else int(D.all_reduce_max(torch.tensor(k_seen)).item())
    p = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    t = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    confusion = torch.bincount(t * k + p, minlength=k * k).reshape(k, k)
    confusion = D.all_reduce_sum(confusion)
    top5_total = int(D.all_reduce_sum(torch.tensor(top5_hits)).item())
    counts = [len(range(r, n_total, world)) for r in range(world)]
    order = np.concatenate([np.arange(r, n_total, world) for r in range(world)])
    inverse = np.argsort(order, kind="stable")
    all_p = D.all_gather_padded(p, counts).numpy()[inverse]
    all_t = D.all_gather_padded(t, counts).numpy()[inverse]
    all_logits = None
    if keep_logits:
        lg = torch.cat(logits_kept) if logits_kept else torch.zeros(0, k)
        all_logits = D.all_gather_padded(lg, counts).numpy()[inverse]

    conf = confusion.numpy().astype(np.int64)
    n = int(conf.sum())
    support = conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)
    return EvalResult(
        accuracy=float(np.trace(conf) / n),
        per_class=per_class.astype(np.float64),
        confusion=conf,
        n=n,
        predictions=all_p.astype(np.int64),
        labels=all_t.astype(np.int64),
        top5=(top5_total / n) if k > 5 else None,
        logits=all_logits,
    )


def eval_kwargs(
    cfg: TrainConfig, *, clips_per_video: int = 1, world_size: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """The keyword arguments of `evaluate` (and `evaluate_checkpoint`) for a stage trained with `cfg`.

    batch_size: the global eval batch (`cfg.eval_batch_size or cfg.batch_size`) split over the `world_size`
    processes (default: the running group's size; at least 1 per process), like the trainer's validation;
    device, amp, num_workers, progress: from `cfg`; clips_per_video as given. `overrides` (num_classes,
    label_key, collate_fn, keep_logits, or any of the above) replace or add entries; a name `evaluate` does
    not take is a TypeError here rather than at the call.

        res = evaluate(model, predict_fn, test_set, **eval_kwargs(cfg, clips_per_video=2, num_classes=60))
    """
    world = D.world_size() if world_size is None else world_size
    kwargs: dict[str, Any] = {
        "batch_size": max(1, (cfg.eval_batch_size or cfg.batch_size) // world),
        "device": cfg.device,
        "amp": cfg.amp,
        "num_workers": cfg.num_workers,
        "clips_per_video": clips_per_video,
        "progress": cfg.progress,
    }
    unknown = sorted(set(overrides) - _EVALUATE_KWARGS)
    if unknown:
        raise TypeError(f"eval_kwargs: evaluate() takes no argument(s) {unknown}")
    kwargs.update(overrides)
    return kwargs


_EVALUATE_KWARGS = frozenset(inspect.signature(evaluate).parameters) - {"model", "predict_fn", "dataset"}


def evaluate_checkpoint(
    model: nn.Module,
    checkpoint: str | os.PathLike,
    predict_fn: PredictFn,
    dataset: Dataset,
    *,
    strict: bool = True,
    **eval_kwargs: Any,
) -> EvalResult:
    """Load a checkpoint's weights into `model` (a run folder means its best checkpoint) and evaluate.

    The usual test evaluation after `train_stage`: model selection was done on validation, so the test split
    is scored with `run_dir/checkpoints/best`. `eval_kwargs` go to `evaluate` (batch_size, device, ...).
    """
    load_checkpoint(checkpoint_base(checkpoint), model, strict=strict)
    dev = eval_kwargs.get("device", "cpu")
    dev = dev if isinstance(dev, torch.device) else resolve_device(dev, int(os.environ.get("LOCAL_RANK", 0)))
    model.to(dev)
    eval_kwargs["device"] = dev
    return evaluate(model, predict_fn, dataset, **eval_kwargs)
