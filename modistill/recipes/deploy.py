"""Deployment of the RGB-only model: load it, preprocess a raw RGB video like the prepared cache, predict,
export to ONNX and check the export. Shared by ``modistill export`` and ``modistill predict``.

The deployed model (REF §3 step 4) is the final network's RGB stream and hallucination stream, both reading
RGB, with the hall -> rgb connections active and late fusion of their logits; depth is never an input.

Preprocessing mirrors ``modistill prepare`` + the evaluation dataset (REF §4, supplement §2):
K evenly spaced frames (``sample_indices(n, K, "even")``), decoded alone (PyAV stops after the last one),
the colour crop the cache used, ``cv2.resize(INTER_AREA)`` to S x S, ImageNet normalisation. The cache
cropped each sample at the intersection of the RGB frame and the depth frame mapped into it by the sample's
skeleton-fitted alignment. A deployed video has neither depth nor skeleton, so the crop comes from the
cache's index: the median alignment of the skeleton-fitted samples of the video's (setup, camera) group when
it is known (NTU file name or ``view=``), else the median over all samples, mapped through
``aligned_crop_geometry`` and stored as fractions of the frame so it scales to any video size. ``crop="full"``
uses the whole frame instead (for footage from another camera).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from modistill.data import cache as C
from modistill.data.align import NOMINAL_COLOR_SIZE, NOMINAL_DEPTH_SIZE, Alignment, aligned_crop_geometry
from modistill.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from modistill.data.ntu import sample_name_from_path
from modistill.data.sampling import sample_indices
from modistill.data.video import VideoReadError, read_video_frames, video_frame_count

if TYPE_CHECKING:
    from .deploy_onnx import OnnxPredictor

__all__ = [
    "DEPLOY_FILE",
    "MODEL_FILE",
    "CropSpec",
    "DeploySpec",
    "DeployedModel",
    "Deployed",
    "crop_fractions",
    "crop_box_pixels",
    "crop_from_cache",
    "load_deployed",
    "load_predictor",
    "preprocess_frames",
    "read_clip",
    "top_k",
]

DEPLOY_FILE = "deploy.json"
MODEL_FILE = "model.onnx"
FORMAT_VERSION = 1
Box = tuple[float, float, float, float]
FULL: Box = (0.0, 0.0, 1.0, 1.0)


# ------------------------------------------------------------------------------------------------ the crop
def crop_fractions(alignment: Alignment) -> Box:
    """The aligned crop of ``alignment`` as fractions ``(x0, y0, x1, y1)`` of the colour frame's width/height.

    Continuous (unrounded) bounds of the RGB/depth intersection on the nominal 1920x1080 frame; the colour box
    does not depend on the depth frame's decoded size, so the fractions hold for any video size.
    """
    W, H = NOMINAL_COLOR_SIZE
    g = aligned_crop_geometry((H, W), NOMINAL_DEPTH_SIZE[::-1], alignment)
    X0, X1 = max(0.0, g.bx), min(float(W), g.bx + g.ax * NOMINAL_DEPTH_SIZE[0])
    Y0, Y1 = max(0.0, g.by), min(float(H), g.by + g.ay * NOMINAL_DEPTH_SIZE[1])
    return (X0 / W, Y0 / H, X1 / W, Y1 / H)


def crop_box_pixels(box: Sequence[float], hw: tuple[int, int], keep_aspect: bool = False) -> tuple[int, ...]:
    """Integer pixel box ``(x0, y0, x1, y1)`` of fractional ``box`` on an ``hw = (H, W)`` frame, rounded
    inwards and squared exactly as ``aligned_crop_geometry`` does (so it reproduces the cache's box)."""
    H, W = int(hw[0]), int(hw[1])
    fx0, fy0, fx1, fy1 = (float(v) for v in box)
    x0, x1 = math.ceil(fx0 * W - 1e-6), math.floor(fx1 * W + 1e-6)
    y0, y1 = math.ceil(fy0 * H - 1e-6), math.floor(fy1 * H + 1e-6)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"crop box {tuple(box)} is empty on a {W}x{H} frame")
    if keep_aspect:
        side = min(x1 - x0, y1 - y0)
        x0 += (x1 - x0 - side) // 2
        y0 += (y1 - y0 - side) // 2
        x1, y1 = x0 + side, y0 + side
    return (x0, y0, x1, y1)


@dataclass
class CropSpec:
    """The colour crop at deployment.

    ``box``: fractions (see :func:`crop_fractions`) from the median alignment of the whole cache; ``groups``:
    the same per ``"<setup>|<camera>"``; ``method``: "aligned", or "full" when the cache did not crop
    (registered RGB-D, RGB-only caches); ``keep_aspect``: as in the cache."""

    box: Box = FULL
    groups: dict[str, Box] = field(default_factory=dict)
    keep_aspect: bool = False
    method: str = "full"
    note: str = ""

    def select(
        self, mode: str = "auto", video: str | Path | None = None, view: str | None = None
    ) -> tuple[Box, str]:
        """``(box, why)`` for ``mode``: "auto" (the view's group if known, else the median), "median", "full",
        or explicit fractions "x0,y0,x1,y1"."""
        if mode == "full":
            return FULL, "full frame"
        if mode not in ("auto", "median"):
            try:
                box = tuple(float(v) for v in mode.split(","))
            except ValueError:
                box = ()
            if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
                raise ValueError(
                    f"crop {mode!r}: expected auto, median, full or fractions x0,y0,x1,y1 in [0, 1]"
                )
            return box, "user box"  # type: ignore[return-value]
        if self.method == "full":
            return FULL, f"full frame ({self.note})" if self.note else "full frame"
        if mode == "auto":
            key = _view_key(view) if view else None
            if key is None and video is not None:
                try:
                    n = sample_name_from_path(video)
                    key = f"{n.setup}|{n.camera}"
                except ValueError:
                    pass
            if key is not None and key in self.groups:
                return tuple(self.groups[key]), f"median alignment of setup|camera {key}"  # type: ignore
            if view and key not in self.groups:
                raise ValueError(
                    f"view {view!r}: no such (setup, camera) group; known: {sorted(self.groups)}"
                )
        return tuple(self.box), "median alignment of all cached samples"  # type: ignore[return-value]


def _view_key(view: str) -> str:
    m = re.fullmatch(r"S(\d+)C(\d+)", view.strip(), re.IGNORECASE) or re.fullmatch(
        r"(\d+)\|(\d+)", view.strip()
    )
    if m is None:
        raise ValueError(f"view {view!r}: expected SsssCccc (e.g. S001C002) or setup|camera (e.g. 1|2)")
    return f"{int(m.group(1))}|{int(m.group(2))}"


def crop_from_cache(cache_root: str | os.PathLike) -> CropSpec:
    """The deployment crop of a prepared cache: median (scale, tx, ty) of its skeleton-fitted index records,
    overall and per (setup, camera) (the same grouping as the preparation's fallback table)."""
    cfg = C.load_config(cache_root)
    keep = bool(cfg.extra.get("keep_aspect", False))
    if "depth" not in cfg.modalities or cfg.extra.get("alignment") == "registered":
        # RGB-only caches resize whole frames; registered RGB-D ones crop the whole frame (squared if asked).
        keep = keep and "depth" in cfg.modalities
        return CropSpec(keep_aspect=keep, method="full", note="the cache resized whole frames")
    recs = [r for r in C.read_index(cache_root) if isinstance(r.get("alignment"), dict)]
    fitted = [r for r in recs if r["alignment"].get("method") == "skeleton"] or recs
    if not fitted:
        raise C.CacheError(
            f"{cache_root}: no index record has an alignment; cannot derive the deployment crop"
        )

    def median_box(rows: list[dict]) -> Box:
        s, tx, ty = np.median([[r["alignment"][k] for k in ("scale", "tx", "ty")] for r in rows], axis=0)
        return crop_fractions(Alignment(scale=float(s), tx=float(tx), ty=float(ty)))

    by_group: dict[str, list[dict]] = {}
    for r in fitted:
        by_group.setdefault(f"{r.get('setup')}|{r.get('camera')}", []).append(r)
    return CropSpec(
        box=median_box(fitted),
        groups={k: median_box(v) for k, v in sorted(by_group.items())},
        keep_aspect=keep,
        method="aligned",
        note=f"median of {len(fitted)} alignments",
    )


# ---------------------------------------------------------------------------------------------- the spec
@dataclass
class DeploySpec:
    """What deployment needs besides the weights; saved as ``deploy.json`` next to ``model.onnx``.

    ``frames`` K and ``size`` S of the clips ``(B, K, 3, S, S)``; ``mean``/``std`` of
    ``(x / 255 - mean) / std`` per RGB channel; ``streams``/``input`` of the network; ``stage`` and
    ``run_dir`` for provenance."""

    frames: int
    size: int
    class_names: list[str]
    crop: CropSpec = field(default_factory=CropSpec)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    sampling: str = "even"
    interpolation: str = "area"
    stage: str = "step4"
    streams: tuple[str, ...] = ("rgb", "hall")
    input: str = "rgb"
    run_dir: str = ""
    version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "deploy spec") -> DeploySpec:
        if int(d.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{source}: format version {d['version']} is newer than this modistill")
        try:
            crop = CropSpec(
                **{
                    **d.get("crop", {}),
                    "box": tuple(d.get("crop", {}).get("box", FULL)),
                    "groups": {k: tuple(v) for k, v in d.get("crop", {}).get("groups", {}).items()},
                }
            )
            tuples = {k: tuple(d[k]) for k in ("mean", "std", "streams") if k in d}
            return cls(**{**d, **tuples, "crop": crop})
        except (TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"{source}: malformed deployment spec ({exc})") from exc

    def save(self, path: str | os.PathLike) -> None:
        C.write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> DeploySpec:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (an export folder holds model.onnx and deploy.json)")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg})") from exc


# -------------------------------------------------------------------------------------------- the model
class DeployedModel(nn.Module):
    """The RGB-only deployed model: ``forward(clips (B, K, 3, S, S)) -> logits (B, num_classes)``.

    Runs ``streams`` of ``net`` (a MultiStreamNet) with the single input ``input_key``; connections between
    the run streams are active, the prediction is the network's fusion of them (late fusion, REF §1)."""

    def __init__(self, net: nn.Module, streams: Sequence[str], input_key: str = "rgb") -> None:
        super().__init__()
        wrong = {s: net.specs[s].modality for s in streams if net.specs[s].modality != input_key}
        if not streams or wrong:
            raise ValueError(
                f"deployed streams {list(streams)} must all read {input_key!r}; these do not: {wrong}"
            )
        self.net, self.streams, self.input_key = net, tuple(streams), input_key

    def forward(self, clips: Tensor) -> Tensor:
        return self.net({self.input_key: clips}, streams=self.streams).logits


@dataclass
class Deployed:
    """A deployed model loaded from a run folder: ``module`` + its :class:`DeploySpec` (``cache``: the
    prepared cache the run trained on, for reference clips)."""

    module: DeployedModel
    spec: DeploySpec
    cache: Path | None = None

    @property
    def streams(self) -> tuple[str, ...]:
        return self.spec.streams

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.spec.input,)

    @property
    def frames(self) -> int:
        return self.spec.frames

    @property
    def size(self) -> int:
        return self.spec.size

    @property
    def class_names(self) -> list[str]:
        return self.spec.class_names

    @property
    def crop(self) -> CropSpec:
        return self.spec.crop

    @torch.no_grad()
    def logits(self, clips: np.ndarray | Tensor) -> np.ndarray:
        """``(B, K, 3, S, S)`` float32 -> ``(B, num_classes)`` logits (numpy)."""
        dev = next(self.module.parameters()).device
        return self.module(torch.as_tensor(clips, dtype=torch.float32, device=dev)).float().cpu().numpy()


def load_deployed(
    run_dir: str | os.PathLike,
    stage: str = "step4",
    *,
    cache: str | os.PathLike | None = None,
    device: str = "cpu",
) -> Deployed:
    """The deployed model of ``stage`` of a run folder, with the best weights, in eval mode.

    ``cache`` overrides the run's ``data.cache`` (its ``cache_config.json`` gives S, its index the crop)."""
    from .session import open_run

    handle = open_run(run_dir)
    ev = handle.stages[stage].stage.evaluate if stage in handle.stages else None
    if ev is None:
        raise KeyError(f"{run_dir}: stage {stage!r} has no result (finished stages: {sorted(handle.stages)})")
    if tuple(ev.inputs) != ("rgb",):
        raise ValueError(
            f"{run_dir}: stage {stage!r} is evaluated on {list(ev.inputs)}; deployment takes RGB only "
            "(export step4, or another stage evaluated on rgb alone)"
        )
    root = Path(cache or handle.exp.data.cache)
    if not (root / C.CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{root / C.CONFIG_NAME}: the run's prepared cache is needed for the input size "
            "and the crop; pass cache= (--cache) or use an export folder"
        )
    cfg = C.load_config(root)
    names = handle.class_names or cfg.class_names or [f"class_{i}" for i in range(handle.num_classes)]
    spec = DeploySpec(
        frames=handle.exp.data.frames,
        size=cfg.size,
        class_names=list(names),
        crop=crop_from_cache(root),
        stage=stage,
        streams=tuple(ev.streams),
        input=ev.inputs[0],
        run_dir=str(Path(run_dir).resolve()),
    )
    module = DeployedModel(handle.model(stage), ev.streams, ev.inputs[0]).to(device).eval()
    return Deployed(module, spec, root)


def load_predictor(
    run: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    stage: str = "step4",
    cache: str | os.PathLike | None = None,
) -> Deployed | OnnxPredictor:
    """PyTorch from a run folder (``run``) or onnxruntime from an export (``model``: folder or model.onnx)."""
    if (run is None) == (model is None):
        raise ValueError("give exactly one of a run folder or an exported model")
    if model is not None:
        from .deploy_onnx import OnnxPredictor

        return OnnxPredictor(model)
    return load_deployed(run, stage, cache=cache)


# ------------------------------------------------------------------------------------------ preprocessing
def preprocess_frames(frames: np.ndarray, spec: DeploySpec, box_px: Sequence[int] | None = None) -> Tensor:
    """uint8 RGB frames ``(K, H, W, 3)`` -> crop ``box_px`` (x0, y0, x1, y1; None = whole frame) -> INTER_AREA
    resize to S x S -> normalised float32 ``(K, 3, S, S)`` (the same ops as prepare + the cached dataset)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (K, H, W, 3), got {frames.dtype} {frames.shape}")
    x0, y0, x1, y1 = box_px if box_px is not None else (0, 0, frames.shape[2], frames.shape[1])
    S = spec.size
    small = np.stack([cv2.resize(f[y0:y1, x0:x1], (S, S), interpolation=cv2.INTER_AREA) for f in frames])
    x = torch.from_numpy(np.ascontiguousarray(small)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)


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
    ``crop``/``view`` (see :meth:`CropSpec.select`). ``info``: frame count, indices, frame size (W, H), crop
    box in pixels and why. Errors name the file.
    """
    video = Path(video)
    n = video_frame_count(video)
    if n < 1:
        raise VideoReadError(f"{video}: the video has no frames")
    idx = np.asarray(indices if indices is not None else sample_indices(n, spec.frames, "even"), np.int64)
    frames = read_video_frames(video, idx)
    why = "given box"
    if box is None:
        box, why = spec.crop.select(crop, video, view)
    px = crop_box_pixels(box, frames.shape[1:3], spec.crop.keep_aspect)
    info = {
        "video": str(video),
        "frames": n,
        "indices": idx.tolist(),
        "size": list(frames.shape[2:0:-1]),
        "crop_px": list(px),
        "crop": why,
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
