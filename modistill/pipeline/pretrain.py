"""Pretraining, the stand-in for ImageNet initialisation (``modistill pretrain``, docs/pretrain.md).

One job per modality: render the pretext frames (``data.synth.pretext``, shared by both modalities and cached),
train a benchmark-shaped ResNet trunk on them (body-part maps + 2D joints, ``models.pretext``) with the one
training loop (checkpoints, exact resume), and write the trunk as ``backbone.safetensors`` with torchvision's
key names, the file ``model.pretrained`` takes exactly as it takes an ImageNet checkpoint.

Folders under ``out`` are content-addressed: ``pretext-<key>/`` (the frames) and ``<modality>-<key>/`` (the
trained trunk; the key hashes the whole :class:`PretrainConfig` including the pretext's), so every seed and
every re-run of the demo reuses one checkpoint, and a killed job resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from safetensors.torch import save
from torch import Tensor
from torch.utils.data import Dataset

from modistill.core.atomic import write_bytes_atomic
from modistill.core.errors import UsageError
from modistill.core.schema import VersionedFile
from modistill.data.normalize import normalize_frames
from modistill.data.synth.pretext import PART_NAMES, PretextConfig
from modistill.data.synth.pretext_store import load_pretext, write_pretext
from modistill.engine import distributed as D
from modistill.engine.config import TrainConfig
from modistill.engine.trainer import train_stage
from modistill.models import create_model
from modistill.models.pretext import NUM_JOINTS, PretextNet, balanced_part_weights, pretext_loss

__all__ = [
    "CHECKPOINT",
    "PretextDataset",
    "PretrainConfig",
    "PretrainFile",
    "PretrainResult",
    "build_pretext_net",
    "pretext_scores",
    "pretrain",
    "pretrain_dir",
]

log = logging.getLogger("modistill.pretrain")

CHECKPOINT = "backbone.safetensors"
_HELD_OUT = 256  # at most this many last frames of the pretext set are held out: the pretext's own score


@dataclass
class PretrainConfig:
    """One pretraining job. ``backbone``/``width`` must equal the benchmark model's (``model.backbone``,
    ``model.width``) for the checkpoint to load; ``pretext`` the frames' settings (its ``size`` the benchmark
    cache's)."""

    modality: Literal["rgb", "depth"] = "rgb"
    backbone: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    width: float = 0.25
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    joint_weight: float = 1.0
    balance: float = 0.5
    grid: int = 8
    seed: int = 0
    pretext: PretextConfig = field(default_factory=PretextConfig)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["pretext"] = self.pretext.to_dict()
        return d

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class PretrainFile(VersionedFile):
    """``<pretrain_dir>/pretrain.json``: the config, the pretext scores before/after and the time taken."""

    KIND: ClassVar[str] = "modistill-pretrain"
    config: dict[str, Any]
    key: str
    checkpoint: str
    held_out: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    time_s: dict[str, float] = field(default_factory=dict)


@dataclass
class PretrainResult:
    checkpoint: Path
    info: PretrainFile
    reused: bool


def pretrain_dir(out: str | Path, cfg: PretrainConfig) -> Path:
    return Path(out) / f"{cfg.modality}-{cfg.key()}"


class PretextDataset(Dataset):
    """Items ``{"x": (3, S, S) float, "parts": (L, L) int64, "joints": (25, 2) float}`` of one modality."""

    def __init__(self, frames: np.ndarray, parts: np.ndarray, joints: np.ndarray) -> None:
        self.frames, self.parts, self.joints = frames, parts, joints

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {
            "x": normalize_frames(self.frames[i]),
            "parts": torch.from_numpy(self.parts[i].astype(np.int64)),
            "joints": torch.from_numpy(self.joints[i]),
        }


def build_pretext_net(cfg: PretrainConfig) -> PretextNet:
    trunk = create_model(cfg.backbone, num_classes=NUM_JOINTS * cfg.grid**2, in_channels=3, width=cfg.width)
    return PretextNet(trunk, num_parts=len(PART_NAMES), label_size=cfg.pretext.label_size, grid=cfg.grid)


def _loss_fn(cfg: PretrainConfig, weights: Tensor | None):
    def loss(model: torch.nn.Module, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        return pretext_loss(model(batch["x"]), batch["parts"], batch["joints"], cfg.joint_weight, weights)

    return loss


@torch.no_grad()
def pretext_scores(
    net: PretextNet, data: PretextDataset, cfg: PretrainConfig, weights: Tensor | None, batch: int = 128
) -> dict[str, float]:
    """Held-out pretext scores: the loss terms, pixel accuracy on body pixels and the joints' mean error (in
    crop units)."""
    net.eval()
    tot: dict[str, float] = {"loss": 0.0, "parts": 0.0, "joints": 0.0}
    body_correct = body_total = 0
    err = 0.0
    n = len(data)
    for i in range(0, n, batch):
        items = [data[j] for j in range(i, min(n, i + batch))]
        x = torch.stack([it["x"] for it in items])
        p = torch.stack([it["parts"] for it in items])
        j = torch.stack([it["joints"] for it in items])
        out = net(x)
        loss, parts = pretext_loss(out, p, j, cfg.joint_weight, weights)
        k = len(items)
        tot["loss"] += float(loss) * k
        tot["parts"] += float(parts["parts"]) * k
        tot["joints"] += float(parts["joints"]) * k
        body = p > 0
        body_correct += int((out.parts.argmax(1) == p)[body].sum())
        body_total += int(body.sum())
        err += float((out.joints() - j).norm(dim=-1).mean()) * k
    res = {k: v / n for k, v in tot.items()}
    res["body_pixel_accuracy"] = body_correct / max(1, body_total)
    res["joint_error"] = err / n
    return res


def pretrain(
    out: str | Path, cfg: PretrainConfig, *, workers: int = 1, progress: bool = True
) -> PretrainResult:
    """Render (or reuse) the pretext frames, train (or reuse, or resume) the trunk, write ``backbone.safetensors``."""
    run_dir = pretrain_dir(out, cfg)
    meta = run_dir / "pretrain.json"
    if meta.is_file() and (run_dir / CHECKPOINT).is_file():
        log.info("pretrain %s: reusing %s", cfg.modality, run_dir)
        return PretrainResult(run_dir / CHECKPOINT, PretrainFile.read(meta), reused=True)
    t0 = time.perf_counter()
    _write_pretext_once(out, cfg.pretext, workers, progress)
    t_frames = time.perf_counter() - t0
    frames, parts, joints = load_pretext(out, cfg.pretext, cfg.modality)
    k = min(_HELD_OUT, len(frames) // 8)
    if k < 1:
        raise UsageError(f"pretext: {len(frames)} frames are too few (at least 8)")
    train = PretextDataset(frames[:-k], parts[:-k], joints[:-k])
    held = PretextDataset(frames[-k:], parts[-k:], joints[-k:])
    weights = None
    if cfg.balance:
        weights = balanced_part_weights(torch.from_numpy(train.parts), len(PART_NAMES), cfg.balance)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = build_pretext_net(cfg)
    before = pretext_scores(net, held, cfg, weights)
    tcfg = TrainConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, progress=progress,
        lr_milestones=[max(1, (2 * cfg.epochs) // 3)] if cfg.epochs > 1 else [], tensorboard=False,
    )
    sr = train_stage(
        net, loss_fn=_loss_fn(cfg, weights), predict_fn=lambda m, b: m(b["x"]).joint_logits.flatten(1),
        train_set=train, val_set=None, cfg=tcfg, run_dir=run_dir, config_dict={"pretrain": cfg.to_dict()},
        resume=(run_dir / "checkpoints" / "last.json").exists(), stage=f"pretrain_{cfg.modality}",
        label_key="parts",
    )
    net = net.cpu()
    after = pretext_scores(net, held, cfg, weights)
    sd = {k: v.detach().contiguous() for k, v in net.trunk.state_dict().items()}
    info = PretrainFile(
        config=cfg.to_dict(), key=cfg.key(), checkpoint=CHECKPOINT,
        held_out={**{f"before_{k}": v for k, v in before.items()}, **{f"after_{k}": v for k, v in after.items()}},
        history=[_epoch_summary(h) for h in sr.history],
        time_s={"frames": t_frames, "total": time.perf_counter() - t0},
    )
    if D.is_main():  # under torchrun every rank trained the same trunk (DDP); rank 0 writes it
        # No safetensors metadata: its order is not stable between processes, and pretrain.json holds it all, so
        # the same settings give the same bytes.
        write_bytes_atomic(run_dir / CHECKPOINT, save(sd))
        info.write(meta)
    D.barrier()  # every rank sees the files (the next stage's `model.pretrained` reads them) before going on
    log.info("pretrain %s: held-out body-pixel accuracy %.3f -> %.3f, joint error %.3f -> %.3f (%s)",
             cfg.modality, before["body_pixel_accuracy"], after["body_pixel_accuracy"], before["joint_error"],
             after["joint_error"], run_dir / CHECKPOINT)
    return PretrainResult(run_dir / CHECKPOINT, info, reused=False)


def _write_pretext_once(out: str | Path, cfg: PretextConfig, workers: int, progress: bool) -> None:
    """Render the pretext frames; under torchrun rank 0 renders them while the other ranks wait."""
    if D.is_main():
        write_pretext(out, cfg, workers=workers, progress=progress)
    D.barrier()


def _epoch_summary(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: record[k] for k in ("epoch", "loss", "time_s") if k in record}
    parts = record.get("parts")
    if isinstance(parts, dict):
        out.update({k: parts[k] for k in ("parts", "joints") if k in parts})
    return out


def _pretrain_worker(modality: str, threads: int | None, out: str, base: dict, progress: bool) -> str:
    from .sweep import seed_worker_setup

    seed_worker_setup(0, threads)
    cfg = PretrainConfig(**{**base, "modality": modality, "pretext": PretextConfig.from_dict(base["pretext"])})
    return str(pretrain(out, cfg, workers=1, progress=progress).checkpoint)


def pretrain_modalities(
    out: str | Path, base: PretrainConfig, modalities: tuple[str, ...] = ("rgb", "depth"), *, workers: int = 2,
    progress: bool = True,
) -> dict[str, Path]:
    """Pretrain one trunk per modality (``base`` with each modality), the frames rendered once with ``workers``
    processes, then the modalities trained in parallel single-threaded processes; returns modality -> checkpoint."""
    from .sweep import run_seeds

    _write_pretext_once(out, base.pretext, workers, progress)
    todo = [m for m in modalities
            if not (pretrain_dir(out, dataclasses.replace(base, modality=m)) / "pretrain.json").is_file()]
    args = (str(out), base.to_dict(), progress)
    if len(todo) > 1 and workers > 1:
        run_seeds(_pretrain_worker, todo, *args)
    else:
        for m in todo:
            _pretrain_worker(m, None, *args)
    return {m: pretrain_dir(out, dataclasses.replace(base, modality=m)) / CHECKPOINT for m in modalities}
