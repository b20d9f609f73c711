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
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modistill.core.atomic import write_json_atomic
from modistill.data import cache as C
from modistill.data.align import (
    NOMINAL_COLOR_SIZE,
    NOMINAL_DEPTH_SIZE,
    Alignment,
    aligned_crop_geometry,
    pixel_box,
)
from modistill.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from modistill.data.ntu import sample_name_from_path

__all__ = [
    "DEPLOY_FILE", "MODEL_FILE", "CropSpec", "DeploySpec", "crop_box_pixels", "crop_fractions", "crop_from_cache",
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
    X0, Y0, X1, Y1 = aligned_crop_geometry((H, W), NOMINAL_DEPTH_SIZE[::-1], alignment).intersection
    return (X0 / W, Y0 / H, X1 / W, Y1 / H)


def crop_box_pixels(box: Sequence[float], hw: tuple[int, int], keep_aspect: bool = False) -> tuple[int, ...]:
    """Integer pixel box ``(x0, y0, x1, y1)`` of fractional ``box`` on an ``hw = (H, W)`` frame, rounded
    inwards and squared exactly as ``aligned_crop_geometry`` does (so it reproduces the cache's box)."""
    H, W = int(hw[0]), int(hw[1])
    fx0, fy0, fx1, fy1 = (float(v) for v in box)
    return pixel_box((fx0 * W, fy0 * H, fx1 * W, fy1 * H), (H, W), keep_aspect)


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
            key = self.group_of(view) if view else None
            if key is None and video is not None:
                try:  # an NTU file name says its (setup, camera) group; other names do not
                    n = sample_name_from_path(video)
                    key = f"{n.setup}|{n.camera}" if f"{n.setup}|{n.camera}" in self.groups else None
                except ValueError:
                    pass
            if key is not None:
                return tuple(self.groups[key]), f"median alignment of setup|camera {key}"  # type: ignore
        return tuple(self.box), "median alignment of all cached samples"  # type: ignore[return-value]

    def group_of(self, view: str) -> str:
        """The crop group of ``view``: a group key ``setup|view`` as the cache's index records them, NTU's
        ``SsssCccc``, or a view id alone when exactly one setup has it (manifests without setups: ``None|v``).
        ``ValueError`` listing the known groups otherwise."""
        v = view.strip()
        if v in self.groups:
            return v
        m = re.fullmatch(r"S(\d+)C(\d+)", v, re.IGNORECASE) or re.fullmatch(r"(\d+)\|(\d+)", v)
        if m is not None and f"{int(m.group(1))}|{int(m.group(2))}" in self.groups:
            return f"{int(m.group(1))}|{int(m.group(2))}"
        same_view = [k for k in sorted(self.groups) if k.partition("|")[2] == v]
        if len(same_view) == 1:
            return same_view[0]
        if same_view:
            raise ValueError(f"view {view!r} is in several setups {same_view}; give one of them as setup|view")
        raise ValueError(
            f"view {view!r}: no such (setup, camera) group; known: {sorted(self.groups) or 'none'} "
            "(e.g. S001C002, 1|2, or the view id of your manifest)"
        )


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
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> DeploySpec:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (an export folder holds model.onnx and deploy.json)")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg})") from exc


