"""Training records: one JSON object per line in run_dir/metrics.jsonl, mirrored to TensorBoard if installed.

Record kinds written by the trainer:
  {"stage", "kind": "step",  "epoch", "step", "lr", "loss", "parts": {...}, "samples_per_s", ["grad_norm"]}
  {"stage", "kind": "epoch", "epoch", "step", "lr", "loss", "parts": {...}, "samples_per_s", "time_s",
   ["grad_norm"], ["val": {"accuracy", "mean_class_accuracy", "n", ...}], "best": bool}
`epoch` is 1-based (the epoch the record belongs to); `step` is the global optimizer step after the record.
The first line of the file is a `MetricsHeader` (`{"format": "modistill-metrics", "version": 1}`); a file
without it is version 1. `read_metrics` checks the header and returns the records only.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from modistill.core.atomic import write_text_atomic
from modistill.core.errors import SchemaError
from modistill.engine import distributed as D
from modistill.engine.files import MetricsHeader
from modistill.engine.serial import to_jsonable

log = logging.getLogger("modistill.engine")
_TB_WARNED = False


def _open_tensorboard(folder: Path, purge_step: int | None) -> Any | None:
    global _TB_WARNED
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:  # tensorboard missing or broken: JSONL still has everything
        if not _TB_WARNED:
            log.warning("TensorBoard logging disabled (%s); metrics.jsonl is still written", exc)
            _TB_WARNED = True
        return None
    return SummaryWriter(log_dir=str(folder), purge_step=purge_step)


class MetricsLogger:
    """Appends records to `<run_dir>/metrics.jsonl` (and TensorBoard under `<run_dir>/tb`); inert when
    `enabled` is False (ranks other than 0)."""

    def __init__(
        self, run_dir: Path, *, enabled: bool, tensorboard: bool, purge_step: int | None = None
    ) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                self._tb = _open_tensorboard(Path(run_dir) / "tb", purge_step)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = to_jsonable(record)
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", encoding="utf-8") as f:
            if new_file:
                f.write(MetricsHeader().line() + "\n")
            f.write(json.dumps(rec, allow_nan=True) + "\n")
        if self._tb is not None:
            self._to_tensorboard(rec)

    def _to_tensorboard(self, rec: dict[str, Any]) -> None:
        stage, step, kind = rec.get("stage", "train"), rec.get("step", 0), rec.get("kind", "step")
        split = "train_step" if kind == "step" else "train_epoch"
        scalars: dict[str, Any] = {}
        for key in ("loss", "lr", "samples_per_s", "grad_norm"):
            if key in rec:
                scalars[f"{stage}/{split}/{key}"] = rec[key]
        for name, v in (rec.get("parts") or {}).items():
            scalars[f"{stage}/{split}/{name}"] = v
        for name, v in (rec.get("val") or {}).items():
            scalars[f"{stage}/val/{name}"] = v
        for tag, v in scalars.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self._tb.add_scalar(tag, v, step)
        self._tb.flush()

    def truncate_after(self, stage: str, epoch: int) -> None:
        """Drop this stage's records of epochs after `epoch` (left by a killed run that is being resumed),
        so a resumed run's file matches an uninterrupted one's."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line, rec in _parse_lines(self.path):
            if rec.get("stage") == stage and int(rec.get("epoch", 0)) > epoch:
                continue
            kept.append(line)
        write_text_atomic(self.path, "".join(k + "\n" for k in kept))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl, without the header (a trailing partial line is ignored)."""
    path = Path(run_dir) / "metrics.jsonl"
    out = []
    for _, rec in _parse_lines(path):
        if MetricsHeader.is_header(rec):
            MetricsHeader.from_dict(rec, origin=str(path))  # SchemaError for another kind or a newer version
        else:
            out.append(rec)
    return out


def _parse_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            out.append((line, json.loads(line)))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                continue  # the last line cut short by a kill mid-write
            raise SchemaError(f"{path}: line {i + 1} is not valid JSON: {exc}") from exc
    return out


class LossMeter:
    """Sample-weighted sums of the loss and its parts (tensors stay on the device: no sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor | float] = {}
        self.samples = 0
        self.grad_norm = 0.0
        self.grad_steps = 0
        self.t0 = time.perf_counter()

    def add(self, loss: Tensor, parts: dict[str, Any], n: int, grad_norm: Tensor | None) -> None:
        # A loss_fn may repeat the total among its parts (distill.terms does, as "loss"): count it once.
        for k, v in [("loss", loss), *sorted((k, v) for k, v in parts.items() if k != "loss")]:
            v = v.detach().float() if isinstance(v, Tensor) else float(v)
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.samples += n
        if grad_norm is not None:
            self.grad_norm = self.grad_norm + grad_norm.detach().float()
            self.grad_steps += 1

    def reduce(self, device: torch.device) -> dict[str, Any]:
        """Means over all ranks' samples; throughput in global samples per second."""
        keys = list(self.sums)
        vals = [torch.as_tensor(self.sums[k], dtype=torch.float64, device=device).reshape(()) for k in keys]
        extra = torch.tensor(
            [float(self.samples), float(self.grad_steps)], dtype=torch.float64, device=device
        )
        gn = torch.as_tensor(self.grad_norm, dtype=torch.float64, device=device).reshape(())
        packed = D.all_reduce_sum(torch.stack([*vals, gn, *extra]))
        total, steps = packed[-2].item(), packed[-1].item()
        means = {k: packed[i].item() / max(total, 1.0) for i, k in enumerate(keys)}
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        out: dict[str, Any] = {"loss": means.pop("loss", float("nan")), "parts": means}
        out["samples_per_s"] = total / elapsed
        if steps:
            # DDP all-reduces gradients before clipping, so every rank saw the same norm: average over steps.
            out["grad_norm"] = packed[-3].item() / steps
        return out
