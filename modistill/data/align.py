"""RGB-depth alignment from the skeletons' joint pixel coordinates, with a fallback, and the aligned crop.

Garcia et al. 2018, supplement §2 (REF §4): NTU publishes no calibration, but every joint has pixel
coordinates in both frames. For all pairs (A, B) of well-tracked joints,
``ratio_x = (colour_x^A - colour_x^B) / (depth_x^A - depth_x^B)`` and likewise for y; the scale is the mean of
the median x ratio and the median y ratio; the frames are overlaid by aligning the skeletons and the
intersection is cropped in both modalities, then resized to the network input.

Coordinate convention: joint coordinates are taken as pixel-*index* coordinates (pixel ``i`` centred at
``x = i``) of the nominal 1920x1080 colour and 512x424 depth frames; conversions to the decoded sizes work in
continuous coordinates ``u = x + 0.5`` so down-scaled copies of the dataset map exactly. The half-pixel
ambiguity of the Kinect SDK's convention is below one colour pixel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from modistill.core.errors import ModistillError

from .ntu import parse_sample_name
from .skeleton import Skeleton, select_actors

__all__ = [
    "NOMINAL_COLOR_SIZE",
    "NOMINAL_DEPTH_SIZE",
    "Alignment",
    "AlignmentError",
    "AlignedCrop",
    "fit_alignment",
    "FallbackTable",
    "fit_or_fallback",
    "aligned_crop_geometry",
    "crop_aligned",
    "median_alignment",
    "pixel_box",
    "reconcile_frame_counts",
]

NOMINAL_COLOR_SIZE = (1920, 1080)  # (width, height), REF §4
NOMINAL_DEPTH_SIZE = (512, 424)


class AlignmentError(ModistillError, ValueError):
    """No alignment can be fitted (no skeleton, no well-tracked joints) or the frames do not overlap."""


@dataclass(frozen=True)
class Alignment:
    """``colour_xy = scale * depth_xy + (tx, ty)`` in nominal-frame pixels (supplement §2).

    ``method`` is ``"skeleton"`` (fitted on this sample) or ``"fallback"`` (borrowed, see ``note``);
    ``residual_px`` is the median reprojection error of the well-tracked joints in colour pixels (NaN for
    fallbacks); ``scale_x``/``scale_y`` are the two medians whose mean is ``scale``.
    """

    scale: float
    tx: float
    ty: float
    n_pairs: int = 0
    method: str = "skeleton"
    residual_px: float = math.nan
    scale_x: float = math.nan
    scale_y: float = math.nan
    note: str = ""

    def depth_to_color(self, xy: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` nominal depth pixels to nominal colour pixels."""
        xy = np.asarray(xy, np.float64)
        return xy * self.scale + np.array([self.tx, self.ty])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Alignment:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def fit_alignment(
    sk: Skeleton,
    actors: np.ndarray | list[int] | None = None,
    *,
    max_frames: int = 32,
    min_denominator_px: float = 3.0,
) -> Alignment:
    """Fit the per-video depth->colour mapping from the joints of ``actors`` (default: the main actor).

    Uses joints with trackingState == 2 only, on at most ``max_frames`` evenly spread frames (the ratios of
    neighbouring frames are nearly identical, so more frames only cost time). Pairs whose depth-coordinate
    difference is below ``min_denominator_px`` are skipped: a 0.1 px error there would swing the ratio wildly.
    The offset is the median over joints of ``colour - scale * depth`` (overlaying the skeletons).

    Raises :class:`AlignmentError` when there is no body or too few well-tracked joints.
    """
    if sk.num_bodies == 0:
        raise AlignmentError(f"{sk.path or 'skeleton'}: no bodies, cannot fit the RGB-depth alignment")
    act = select_actors(sk, 1) if actors is None else np.asarray(actors, np.int64).reshape(-1)
    pres = sk.present[:, act].any(axis=1)
    frames = np.flatnonzero(pres)
    if frames.size > max_frames:
        frames = frames[np.linspace(0, frames.size - 1, max_frames).round().astype(np.int64)]
    d = sk.depth_xy[frames][:, act].reshape(-1, sk.depth_xy.shape[2], 2).astype(np.float64)  # (M, 25, 2)
    c = sk.color_xy[frames][:, act].reshape(-1, sk.color_xy.shape[2], 2).astype(np.float64)
    ok = (sk.tracking[frames][:, act].reshape(-1, sk.tracking.shape[2]) == 2) & np.isfinite(d).all(-1)
    ok &= np.isfinite(c).all(-1)
    pair_ok = ok[:, :, None] & ok[:, None, :]
    pair_ok &= np.triu(np.ones(pair_ok.shape[1:], bool), k=1)[None]
    n_pairs = int(pair_ok.sum())
    dd = d[:, :, None, :] - d[:, None, :, :]  # (M, 25, 25, 2)
    dc = c[:, :, None, :] - c[:, None, :, :]
    medians = []
    for ax in (0, 1):
        use = pair_ok & (np.abs(dd[..., ax]) >= min_denominator_px)
        if not use.any():
            raise AlignmentError(
                f"{sk.path or 'skeleton'}: no well-tracked joint pairs spread at least "
                f"{min_denominator_px} px along {'xy'[ax]}; cannot fit the alignment"
            )
        medians.append(float(np.median(dc[..., ax][use] / dd[..., ax][use])))
    scale = 0.5 * (medians[0] + medians[1])
    off = c[ok] - scale * d[ok]  # (J, 2)
    tx, ty = (float(v) for v in np.median(off, axis=0))
    res = np.linalg.norm(c[ok] - (scale * d[ok] + np.array([tx, ty])), axis=1)
    return Alignment(
        scale=scale,
        tx=tx,
        ty=ty,
        n_pairs=n_pairs,
        method="skeleton",
        residual_px=float(np.median(res)),
        scale_x=medians[0],
        scale_y=medians[1],
    )


def median_alignment(rows: Sequence[Sequence[float]], where: str) -> Alignment:
    """The fallback rule: the per-component median of ``rows`` of ``(scale, tx, ty)`` skeleton fits, as a
    ``method="fallback"`` alignment whose note names ``where`` the fits come from (shared by `FallbackTable`
    and `modistill.data.prepare_sample.AlignmentTable`)."""
    s, tx, ty = (float(v) for v in np.median(np.asarray(rows), axis=0))
    return Alignment(scale=s, tx=tx, ty=ty, method="fallback", note=f"median of {len(rows)} fits, {where}")


class FallbackTable:
    """Alignment for samples without usable skeletons (missing list, 0-body files).

    Skeleton-fitted alignments of other samples are grouped by (setup, camera) (the rig is fixed within a
    setup and camera; the offset still varies with subject distance, REF §4 fixtures README); ``get`` returns
    the per-key median of scale, tx and ty, or the median over all samples when the key has none.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, int], list[tuple[float, float, float]]] = {}

    def add(self, name: str, alignment: Alignment) -> None:
        """Record a fitted alignment (fallbacks are ignored so they never feed on themselves)."""
        if alignment.method != "skeleton":
            return
        n = parse_sample_name(name)
        self._by_key.setdefault((n.setup, n.camera), []).append(
            (float(alignment.scale), float(alignment.tx), float(alignment.ty))
        )

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())

    def get(self, name: str) -> Alignment:
        """The fallback alignment for sample ``name``; ``AlignmentError`` if the table is empty."""
        n = parse_sample_name(name)
        rows = self._by_key.get((n.setup, n.camera))
        where = f"S{n.setup:03d}C{n.camera:03d}"
        if not rows:
            rows = [r for v in self._by_key.values() for r in v]
            where = "all setups/cameras"
        if not rows:
            raise AlignmentError(f"{name}: no skeleton-fitted alignments recorded yet, no fallback possible")
        return median_alignment(rows, where)

    def to_dict(self) -> dict:
        return {f"{s},{c}": [list(r) for r in rows] for (s, c), rows in self._by_key.items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> FallbackTable:
        t = cls()
        for key, rows in d.items():
            s, c = (int(v) for v in key.split(","))
            t._by_key[(s, c)] = [tuple(float(v) for v in r) for r in rows]  # type: ignore[misc]
        return t


def fit_or_fallback(sk: Skeleton | None, name: str, table: FallbackTable) -> Alignment:
    """Fit on ``sk`` if possible, else ``table.get(name)``."""
    if sk is not None:
        try:
            return fit_alignment(sk)
        except AlignmentError:
            pass
    return table.get(name)


@dataclass(frozen=True)
class AlignedCrop:
    """Geometry of the aligned crop on decoded frames (continuous pixel coordinates, ``u = index + 0.5``).

    ``rgb_box`` (x0, y0, x1, y1) integer pixel bounds in the RGB frame (`pixel_box` of ``intersection``);
    ``depth_box`` the same region in depth pixels (fractional); ``ax, bx, ay, by``: ``u_rgb = a * u_depth + b``
    per axis; ``intersection``: the continuous (unrounded, unsquared) RGB/depth intersection in RGB pixels.
    """

    rgb_box: tuple[int, int, int, int]
    depth_box: tuple[float, float, float, float]
    ax: float
    bx: float
    ay: float
    by: float
    intersection: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def pixel_box(
    box: Sequence[float], hw: tuple[int, int], keep_aspect: bool = False
) -> tuple[int, int, int, int]:
    """Whole-pixel crop ``(x0, y0, x1, y1)`` of the continuous box ``box`` (pixel edges, ``x0 <= u < x1``) on
    an ``hw = (H, W)`` frame: clamped to the frame and rounded inwards (1e-6 tolerance); with ``keep_aspect``
    the centred square of it (side = the shorter edge; an odd leftover pixel goes to the right/bottom).

    The one crop rounding/squaring rule: the prepared cache's crops (`aligned_crop_geometry`), the flow pass
    and deployment (fractions of the frame times its size) all go through it. Raises `AlignmentError` (a
    ``ValueError``) when less than one pixel remains.
    """
    H, W = int(hw[0]), int(hw[1])
    X0, Y0, X1, Y1 = (float(v) for v in box)
    x0, x1 = max(0, math.ceil(X0 - 1e-6)), min(W, math.floor(X1 + 1e-6))
    y0, y1 = max(0, math.ceil(Y0 - 1e-6)), min(H, math.floor(Y1 + 1e-6))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise AlignmentError(f"crop box {tuple(box)} is empty on a {W}x{H} frame")
    if keep_aspect:
        side = min(x1 - x0, y1 - y0)
        x0 += (x1 - x0 - side) // 2
        y0 += (y1 - y0 - side) // 2
        x1, y1 = x0 + side, y0 + side
    return (x0, y0, x1, y1)


def aligned_crop_geometry(
    rgb_hw: tuple[int, int],
    depth_hw: tuple[int, int],
    alignment: Alignment,
    *,
    keep_aspect: bool = False,
    nominal_color: tuple[int, int] = NOMINAL_COLOR_SIZE,
    nominal_depth: tuple[int, int] = NOMINAL_DEPTH_SIZE,
) -> AlignedCrop:
    """Where the depth frame, mapped into the RGB frame, intersects it (sizes are ``(height, width)``)."""
    (H, W), (h, w) = rgb_hw, depth_hw
    (cw, ch), (dw, dh) = nominal_color, nominal_depth
    s = alignment.scale
    # u_c = (W/cw) * (s * (u_d * dw/w - 0.5) + tx + 0.5): index->continuous conversions at both ends.
    ax = (W / cw) * s * (dw / w)
    bx = (W / cw) * (alignment.tx + 0.5 - 0.5 * s)
    ay = (H / ch) * s * (dh / h)
    by = (H / ch) * (alignment.ty + 0.5 - 0.5 * s)
    inter = (max(0.0, bx), max(0.0, by), min(float(W), bx + ax * w), min(float(H), by + ay * h))
    try:
        x0, y0, x1, y1 = pixel_box(inter, (H, W), keep_aspect)
    except AlignmentError:
        raise AlignmentError(
            f"the depth frame mapped by {alignment} does not overlap the {W}x{H} RGB frame"
        ) from None
    dbox = ((x0 - bx) / ax, (y0 - by) / ay, (x1 - bx) / ax, (y1 - by) / ay)
    return AlignedCrop((x0, y0, x1, y1), dbox, ax, bx, ay, by, inter)


def crop_aligned(
    rgb: np.ndarray,
    depth: np.ndarray,
    alignment: Alignment,
    out_size: int = 224,
    *,
    keep_aspect: bool = False,
    nominal_color: tuple[int, int] = NOMINAL_COLOR_SIZE,
    nominal_depth: tuple[int, int] = NOMINAL_DEPTH_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the RGB/depth intersection and resize both to ``out_size`` x ``out_size``.

    ``rgb`` (n, H, W, 3) uint8; ``depth`` (n, h, w) (uint16 mm) or (n, h, w, C) (e.g. jet-encoded);
    returns ``(rgb (n, S, S, 3), depth (n, S, S[, C]))`` with the input dtypes. Sizes may differ from the
    nominal 1920x1080 / 512x424 (down-scaled copies): the mapping is rescaled to the decoded sizes.

    The intersection (about 1480x1080 colour pixels on NTU) is squashed to a square by default, as in the
    paper (supplement §2: "the cropped sections are rescaled to 224x224"), which changes the aspect ratio;
    ``keep_aspect=True`` takes the centred square of the intersection instead.

    RGB: integer crop + ``cv2.resize(INTER_AREA)``. Depth: nearest-neighbour sampling of exactly the same
    region (``cv2.warpAffine(INTER_NEAREST)``, equivalent to a fractional crop + nearest resize), so the
    mask stays exact, no mixed foreground/background depths are invented, and the depth crop is not rounded
    to whole depth pixels (each worth ~3 colour pixels).
    """
    rgb = np.asarray(rgb)
    depth = np.asarray(depth)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"crop_aligned: rgb must be (n, H, W, 3), got {rgb.shape}")
    if depth.ndim not in (3, 4) or depth.shape[0] != rgb.shape[0]:
        raise ValueError(
            f"crop_aligned: depth must be (n, h, w[, C]) with n={rgb.shape[0]}, got {depth.shape}"
        )
    g = aligned_crop_geometry(
        rgb.shape[1:3],
        depth.shape[1:3],
        alignment,
        keep_aspect=keep_aspect,
        nominal_color=nominal_color,
        nominal_depth=nominal_depth,
    )
    S = int(out_size)
    x0, y0, x1, y1 = g.rgb_box
    rgb_out = np.stack([cv2.resize(f[y0:y1, x0:x1], (S, S), interpolation=cv2.INTER_AREA) for f in rgb])
    if rgb_out.ndim == 3:
        rgb_out = rgb_out[..., None]
    # Output index j (centre u_o = j + .5) -> u_rgb = x0 + u_o*kx -> u_depth = (u_rgb - b)/a -> index - .5.
    kx, ky = (x1 - x0) / S, (y1 - y0) / S
    M = np.array(
        [
            [kx / g.ax, 0.0, (x0 + 0.5 * kx - g.bx) / g.ax - 0.5],
            [0.0, ky / g.ay, (y0 + 0.5 * ky - g.by) / g.ay - 0.5],
        ]
    )
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    depth_out = np.stack(
        [
            cv2.warpAffine(f, M, (S, S), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            for f in depth
        ]
    )
    if depth.ndim == 4 and depth_out.ndim == 3:
        depth_out = depth_out[..., None]
    return rgb_out, depth_out


def reconcile_frame_counts(counts: Mapping[str, int]) -> tuple[int, str | None]:
    """Usable frame count across modalities (the minimum) and a warning text when they disagree.

    NTU's RGB, depth and skeleton counts occasionally differ by a frame or two; frames are assumed to be
    synchronised from the start, so the first ``min`` frames of each modality are used (not fatal).
    """
    if not counts:
        raise ValueError("reconcile_frame_counts: no frame counts given")
    vals = {k: int(v) for k, v in counts.items()}
    n = min(vals.values())
    if len(set(vals.values())) == 1:
        return n, None
    desc = ", ".join(f"{k}={v}" for k, v in vals.items())
    return n, f"frame counts differ ({desc}); using the first {n} frames of each"
