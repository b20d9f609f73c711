"""Preprocessing for deployment: decode a clip, crop, resize and normalise exactly as prepare + the dataset do."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch import Tensor

from modistill.data.normalize import normalize_frames
from modistill.data.sampling import sample_indices
from modistill.data.video import VideoReadError, declared_frame_count, read_video_frames, video_frame_count

from .spec import DeploySpec, crop_box_pixels

__all__ = ["declared_frame_count", "preprocess_frames", "read_clip", "top_k"]


def preprocess_frames(frames: np.ndarray, spec: DeploySpec, box_px: Sequence[int] | None = None) -> Tensor:
    """uint8 RGB frames ``(K, H, W, 3)`` -> crop ``box_px`` (x0, y0, x1, y1; None = whole frame) -> INTER_AREA
    resize to S x S -> normalised float32 ``(K, 3, S, S)`` (the same ops as prepare + the cached dataset)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (K, H, W, 3), got {frames.dtype} {frames.shape}")
    x0, y0, x1, y1 = box_px if box_px is not None else (0, 0, frames.shape[2], frames.shape[1])
    S = spec.size
    small = np.stack([cv2.resize(f[y0:y1, x0:x1], (S, S), interpolation=cv2.INTER_AREA) for f in frames])
    return normalize_frames(small, spec.mean, spec.std)


def read_clip(
    video: str | os.PathLike,
    spec: DeploySpec,
    *,
    crop: str = "auto",
    view: str | None = None,
    indices: Sequence[int] | None = None,
    box: Sequence[float] | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """Decode and preprocess one clip of ``video``: ``((K, 3, S, S) float32, info)``.

    ``indices`` overrides the K evenly spaced frames, ``box`` (fractions) the crop chosen by
    ``crop``/``view`` (see :meth:`CropSpec.select`). ``info``: ``frames`` (frames present, counted by demuxing:
    the count the sampling uses), ``frames_declared`` (the container header's count, None if it has none),
    indices, frame size (W, H), crop box in pixels and why, ``warnings`` (frames short of the declared count,
    i.e. a truncated or damaged file; fewer frames than the model's K, so frames repeat). Errors name the file.
    """
    video = Path(video)
    n = video_frame_count(video)
    declared = declared_frame_count(video)
    if n < 1:
        said = f" (the container declares {declared})" if declared else ""
        raise VideoReadError(f"{video}: the video has no readable frames{said}")
    warnings = []
    if declared is not None and n < declared:
        warnings.append(
            f"{video}: only {n} of the {declared} frames the container declares are present (truncated or "
            f"damaged file?); the clip is sampled from those {n}"
        )
    if n < spec.frames:
        warnings.append(f"{video}: {n} frames, fewer than the {spec.frames} the model takes; frames repeat")
    idx = np.asarray(indices if indices is not None else sample_indices(n, spec.frames, "even"), np.int64)
    frames = read_video_frames(video, idx)
    why = "given box"
    if box is None:
        box, why = spec.crop.select(crop, video, view)
    px = crop_box_pixels(box, frames.shape[1:3], spec.crop.keep_aspect)
    info = {
        "video": str(video),
        "frames": n,
        "frames_declared": declared,
        "indices": idx.tolist(),
        "size": list(frames.shape[2:0:-1]),
        "crop_px": list(px),
        "crop": why,
        "warnings": warnings,
    }
    return preprocess_frames(frames, spec, px), info


def top_k(logits: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[dict[str, Any]]:
    """``[{"label", "name", "probability"}]`` of the k most probable classes of ``logits (num_classes,)``
    (softmax over all classes, so the k probabilities sum to at most 1)."""
    z = np.asarray(logits, np.float64).reshape(-1)
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[: max(1, int(k))]
    return [{"label": int(i), "name": str(class_names[i]), "probability": float(p[i])} for i in order]
