"""Render the pretext frames once into a content-addressed folder of shards, and read them back.

Layout (docs/pretrain.md): ``<root>/pretext-<key>/`` with ``pretext.json`` (the :class:`PretextConfig` and the
shard count, written last) and ``shard-<i>.npz`` (the arrays of :class:`~.pretext.PretextFrames` for
``SHARD_GROUPS`` consecutive groups). ``<key>`` hashes the config, so a folder is only ever reused for the same
frames; each shard is written atomically and complete shards are skipped, so an interrupted run resumes. Shards
are pure functions of ``(config, shard index)``: ``workers > 1`` writes the same bytes as a serial run.
"""

from __future__ import annotations

import io
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from modistill.core.atomic import remove_stale_temps, write_bytes_atomic
from modistill.core.errors import UsageError
from modistill.core.schema import VersionedFile

from .pretext import PretextConfig, num_groups, render_group

__all__ = ["PretextFile", "SHARD_GROUPS", "pretext_dir", "write_pretext", "load_pretext"]

SHARD_GROUPS = 32  # groups per shard (256 frames at 8 poses per view)


@dataclass
class PretextFile(VersionedFile):
    """``<pretext_dir>/pretext.json``: the config the frames were rendered with, and how many shards hold them."""

    KIND: ClassVar[str] = "modistill-pretext"
    config: dict
    key: str
    shards: int
    frames: int


def pretext_dir(root: str | Path, cfg: PretextConfig) -> Path:
    return Path(root) / f"pretext-{cfg.key()}"


def _num_shards(cfg: PretextConfig) -> int:
    return -(-num_groups(cfg) // SHARD_GROUPS)


def _shard_path(folder: Path, i: int) -> Path:
    return folder / f"shard-{i:04d}.npz"


def _render_shard(cfg: PretextConfig, i: int) -> dict[str, np.ndarray]:
    groups = range(i * SHARD_GROUPS, min((i + 1) * SHARD_GROUPS, num_groups(cfg)))
    frames = [render_group(cfg, g).arrays() for g in groups]
    return {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}


def _write_shard(cfg_dict: dict, folder: str, i: int) -> int:
    cfg = PretextConfig.from_dict(cfg_dict)
    buf = io.BytesIO()
    np.savez(buf, **_render_shard(cfg, i))  # uncompressed: the arrays are small and load fast
    write_bytes_atomic(_shard_path(Path(folder), i), buf.getvalue())
    return i


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # parallelism is across shards


def write_pretext(root: str | Path, cfg: PretextConfig, *, workers: int = 1, progress: bool = False) -> Path:
    """Render every missing shard of ``cfg`` under ``root``; returns the pretext folder (idempotent)."""
    folder = pretext_dir(root, cfg)
    meta = folder / "pretext.json"
    if meta.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    n = _num_shards(cfg)
    todo = [i for i in range(n) if not _shard_path(folder, i).is_file()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, initial=n - len(todo), unit="shard", desc="pretext frames")
    try:
        if workers <= 1 or len(todo) <= 1:
            for i in todo:
                _write_shard(cfg.to_dict(), str(folder), i)
                bar and bar.update(1)
        else:
            # spawn: workers never inherit the parent's threads (torch, OpenCV pools) mid-operation.
            with mp.get_context("spawn").Pool(min(workers, len(todo)), _init_worker) as pool:
                args = [(cfg.to_dict(), str(folder), i) for i in todo]
                for _ in pool.starmap(_write_shard, args, chunksize=1):
                    bar and bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    PretextFile(config=cfg.to_dict(), key=cfg.key(), shards=n, frames=cfg.frames).write(meta)
    return folder


def load_pretext(root: str | Path, cfg: PretextConfig, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frames (N, S, S, 3) uint8, parts (N, L, L) uint8, joints (N, 25, 2) float32)`` of ``modality``
    (``"rgb"`` or ``"depth"``) from a folder :func:`write_pretext` finished."""
    if modality not in ("rgb", "depth"):
        raise UsageError(f"pretext modality must be 'rgb' or 'depth', got {modality!r}")
    folder = pretext_dir(root, cfg)
    info = PretextFile.read(folder / "pretext.json")
    parts: dict[str, list[np.ndarray]] = {"x": [], "p": [], "j": []}
    for i in range(info.shards):
        with np.load(_shard_path(folder, i)) as z:
            parts["x"].append(z[modality])
            parts["p"].append(z[f"{modality}_parts"].astype(np.uint8))
            parts["j"].append(z[f"{modality}_joints"])
    return tuple(np.concatenate(parts[k]) for k in ("x", "p", "j"))  # type: ignore[return-value]

