"""Optical flow for the motion-distillation method: extraction, uint8 quantisation, flips, caching.

Conventions (REF §6, the MARS / mmaction2 / I3D convention):

- Flow is computed on *grayscale* frame pairs (frame j -> frame j+1) with OpenCV. A flow field is
  ``(H, W, 2)`` float32 pixels, channel 0 = x (rightward), channel 1 = y (downward), and follows OpenCV's
  definition ``prev(y, x) ~ next(y + flow_y, x + flow_x)``: content moving right by 2 px gives flow_x = +2.
- Stored flow is clipped to ``±bound`` (bound = 20 px) and quantised per direction as
  ``round((f + bound) / (2 bound) * 255)``. Zero flow sits at 127.5, so it quantises to 128 (round half to
  even) and reads back as +0.078 px: the convention has no exact zero; we keep it for parity with published
  flow caches.
- A sampled time step ``i`` stacks ``L`` consecutive pairs (i, i+1), ..., (i+L-1, i+L) as ``2L`` channels in
  the order ``[x1, y1, x2, y2, ...]`` (Simonyan & Zisserman's stacking); pair starts past the last pair of the
  video are clamped to it, so a step at the video end repeats the last pair (n-2, n-1).
- A horizontal flip mirrors the image and negates every x channel (REF §6). In uint8 that is ``x -> 255 - x``,
  which negates the *dequantised* value exactly; see :func:`flip_flow` for the one-level tie at zero flow.
- The prepared cache stores flow as modality ``"flow"``: ``<cache>/flow/<sample>.npy``, uint8
  ``(F, S, S, 2L)``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from modistill.core.atomic import save_array_atomic

from .cache import CacheError, array_path, load_array
from .normalize import normalize_flow_frames
from .video import iter_video_frames

FLOW_BOUND = 20.0  # px; MARS / mmaction2 / I3D clip value (REF §6)
FLOW_METHODS = ("tvl1", "dis", "farneback")

# TV-L1 keyword -> OpenCV create() argument; defaults are OpenCV's (tau 0.25, lambda 0.15, theta 0.3,
# 5 scales, 5 warps), the values REF §6 quotes for the MARS/I3D extraction.
_TVL1_KEYS = {
    "tau": "tau",
    "lambda_": "lambda_",
    "lam": "lambda_",
    "theta": "theta",
    "nscales": "nscales",
    "warps": "warps",
    "epsilon": "epsilon",
    "inner_iterations": "innnerIterations",  # (sic) OpenCV's spelling
    "outer_iterations": "outerIterations",
    "scale_step": "scaleStep",
    "gamma": "gamma",
    "median_filtering": "medianFiltering",
}
_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# DIS keyword -> setter applied after the preset (overrides the preset's value).
_DIS_SETTERS = {
    "finest_scale": "setFinestScale",
    "patch_size": "setPatchSize",
    "patch_stride": "setPatchStride",
    "gradient_descent_iterations": "setGradientDescentIterations",
    "variational_refinement_iterations": "setVariationalRefinementIterations",
    "variational_refinement_alpha": "setVariationalRefinementAlpha",
    "variational_refinement_delta": "setVariationalRefinementDelta",
    "variational_refinement_gamma": "setVariationalRefinementGamma",
    "use_mean_normalization": "setUseMeanNormalization",
    "use_spatial_propagation": "setUseSpatialPropagation",
}
# Farneback defaults: the values of OpenCV's own dense-flow sample (samples/python/opt_flow.py):
# a classical 0.5 pyramid of 3 levels, 15 px averaging window, 3 iterations per level, polynomial
# neighbourhood 5 with sigma 1.2 (OpenCV docs recommend 1.1-1.2 for poly_n = 5), box window (flags 0).
FARNEBACK_DEFAULTS: dict[str, Any] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}

_local = threading.local()  # OpenCV algorithm objects are stateful: one cache per thread


def _estimator(method: str, params: dict[str, Any]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A ``(prev_gray, next_gray) -> (H, W, 2) float32`` callable; TV-L1/DIS instances are created once per
    (method, params) and thread, because building them (and TV-L1's buffers) is a large share of the cost."""
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}; expected one of {FLOW_METHODS}")
    cache: dict = _local.__dict__.setdefault("estimators", {})
    key = (method, tuple(sorted(params.items())))
    if key in cache:
        return cache[key]
    if method == "tvl1":
        bad = set(params) - set(_TVL1_KEYS)
        if bad:
            raise ValueError(f"unknown TV-L1 parameter(s) {sorted(bad)}; allowed: {sorted(_TVL1_KEYS)}")
        algo = cv2.optflow.DualTVL1OpticalFlow_create(**{_TVL1_KEYS[k]: v for k, v in params.items()})
        fn = lambda a, b: algo.calc(a, b, None)  # noqa: E731
    elif method == "dis":
        bad = set(params) - set(_DIS_SETTERS) - {"preset"}
        if bad:
            raise ValueError(
                f"unknown DIS parameter(s) {sorted(bad)}; allowed: preset, {sorted(_DIS_SETTERS)}"
            )
        preset = params.get("preset", "medium")
        if isinstance(preset, str):
            if preset not in _DIS_PRESETS:
                raise ValueError(f"unknown DIS preset {preset!r}; expected one of {sorted(_DIS_PRESETS)}")
            preset = _DIS_PRESETS[preset]
        algo = cv2.DISOpticalFlow_create(int(preset))
        for k, v in params.items():
            if k != "preset":
                getattr(algo, _DIS_SETTERS[k])(v)
        fn = lambda a, b: algo.calc(a, b, None)  # noqa: E731
    else:
        bad = set(params) - set(FARNEBACK_DEFAULTS)
        if bad:
            raise ValueError(
                f"unknown Farneback parameter(s) {sorted(bad)}; allowed: {sorted(FARNEBACK_DEFAULTS)}"
            )
        p = {**FARNEBACK_DEFAULTS, **params}
        fn = lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, **p)  # noqa: E731
    cache[key] = fn
    return fn


def _to_gray(frames: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) uint8 RGB -> (n, H, W) uint8 luma (ITU-R 601 weights, as cv2.cvtColor)."""
    if frames.ndim == 3:  # already grayscale
        return np.ascontiguousarray(frames)
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def compute_flow(frames: np.ndarray, method: str = "tvl1", **params: Any) -> np.ndarray:
    """Dense optical flow between consecutive frames.

    Args:
        frames: ``(n, H, W, 3)`` uint8 RGB (or ``(n, H, W)`` uint8 grayscale), ``n >= 2``.
        method: ``"tvl1"`` (cv2.optflow Dual TV-L1; keys: tau, lambda_ (or lam), theta, nscales, warps,
            epsilon, inner_iterations, outer_iterations, scale_step, gamma, median_filtering), ``"dis"``
            (keys: preset = "ultrafast" | "fast" | "medium" (default), finest_scale, patch_size,
            patch_stride, ...), or ``"farneback"`` (keys of :data:`FARNEBACK_DEFAULTS`).
    Returns:
        ``(n - 1, H, W, 2)`` float32 flow in pixels, pair k = frame k -> frame k+1, channels (x, y).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3):
        raise ValueError(
            f"compute_flow expects (n, H, W, 3) or (n, H, W) uint8, got {frames.dtype} {frames.shape}"
        )
    if frames.shape[0] < 2:
        raise ValueError(f"compute_flow needs at least 2 frames, got {frames.shape[0]}")
    fn = _estimator(method, params)
    gray = _to_gray(frames)
    return np.stack([fn(gray[k], gray[k + 1]) for k in range(len(gray) - 1)]).astype(np.float32, copy=False)


def quantize_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Float flow (any shape) -> uint8 ``round((clip(f, -b, b) + b) / (2 b) * 255)``, b = bound (REF §6)."""
    f = np.clip(np.asarray(flow, dtype=np.float32), -bound, bound)
    return np.rint((f + bound) * (255.0 / (2.0 * bound))).astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """uint8 -> float32 ``q / 255 * 2 bound - bound``; error vs. an in-range input is at most bound/255.

    Computed as ``(q - 127.5) * 2 bound / 255``: centring first avoids float32 cancellation near zero and
    makes ``dequantize(255 - q) == -dequantize(q)`` hold bit for bit.
    """
    q = np.asarray(q)
    if q.dtype != np.uint8:
        raise ValueError(f"dequantize_flow expects uint8, got {q.dtype}")
    return ((q.astype(np.float32) - np.float32(127.5)) * np.float32(2.0 * bound / 255.0)).astype(np.float32)


def flip_flow(flow: np.ndarray | torch.Tensor, quantized: bool = True, channels_last: bool = True):
    """Horizontal flip of stacked flow ``(..., H, W, 2L)`` (or ``(..., 2L, H, W)`` with channels_last=False).

    Mirrors the width axis and negates every x channel (even channel indices, REF §6): ``-f`` for float flow,
    ``255 - q`` for uint8. ``dequantize(255 - q) == -dequantize(q)`` exactly, so the uint8 flip is the exact
    flip of what the network reads. It equals ``quantize(-f)`` except where ``(f + bound) / (2 bound) * 255``
    is an exact half integer (a rounding tie, including f = 0 -> 128, whose flip is 127): there the two differ
    by one level, which no integer rounding rule can avoid since 255 is odd. Numpy arrays and tensors work.
    """
    w_axis, c_axis = (-2, -1) if channels_last else (-1, -3)
    if flow.shape[c_axis] % 2:
        raise ValueError(
            f"flow needs an even number of (x, y) channels on axis {c_axis}, got shape {flow.shape}"
        )
    is_torch = isinstance(flow, torch.Tensor)
    if quantized and flow.dtype not in (np.uint8, torch.uint8):
        raise ValueError(f"flip_flow(quantized=True) expects uint8, got {flow.dtype}")
    out = flow.flip(w_axis).clone() if is_torch else np.flip(flow, axis=w_axis).copy()
    idx = [slice(None)] * out.ndim
    idx[c_axis] = slice(0, None, 2)
    idx = tuple(idx)
    out[idx] = (255 - out[idx]) if quantized else -out[idx]
    return out


def flow_to_tensor(flow_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, S, S, 2L)`` -> float32 ``(T, 2L, S, S)`` = dequantised / bound, in [-1, 1].

    ``(q / 255 * 2b - b) / b = (q - 127.5) / 127.5`` does not depend on the bound (centred first, as in
    :func:`dequantize_flow`, so a uint8 flip is an exact negation here too).
    """
    t = torch.as_tensor(np.asarray(flow_u8)) if not isinstance(flow_u8, torch.Tensor) else flow_u8
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] % 2:
        raise ValueError(f"flow_to_tensor expects uint8 (T, S, S, 2L), got {t.dtype} {tuple(t.shape)}")
    return normalize_flow_frames(t).contiguous()  # the one definition (normalize.py)


def flow_pair_starts(indices: Sequence[int] | np.ndarray, num_frames: int, stack: int = 1) -> np.ndarray:
    """``(F, L)`` int64 first frames of the pairs stacked at each sampled index: ``min(i + l, n - 2)``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if num_frames < 2:
        raise ValueError(f"optical flow needs a video of at least 2 frames, got {num_frames}")
    if stack < 1:
        raise ValueError(f"stack must be >= 1, got {stack}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_frames):
        raise ValueError(f"frame indices {idx.tolist()} out of range for a {num_frames}-frame video")
    return np.minimum(idx[:, None] + np.arange(stack)[None, :], num_frames - 2)


def _gray_from_video(
    path: Path, idx: np.ndarray, stack: int, prep: Callable[[np.ndarray], np.ndarray]
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Decode ``path`` up to the last frame the steps ``idx`` need: ({frame: prep(frame)}, pair starts).

    Streams the frames (`video.iter_video_frames`) rather than calling `read_video_frames`: flow needs the
    true frame count for the end clamp, which a streaming decode learns for free, and cropping each frame as
    it is decoded keeps memory at crop size for full-HD sources.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: video not found")
    if idx.size and idx.min() < 0:
        raise ValueError(f"{path}: negative frame index in {idx.tolist()}")
    # Unclamped window: every frame any step could need, decoded once; stop after the last one.
    needed_all = np.unique((idx[:, None] + np.arange(stack + 1)[None, :]).ravel())
    last_needed = int(needed_all.max()) if needed_all.size else -1
    wanted = set(needed_all.tolist())
    gray: dict[int, np.ndarray] = {}
    tail: list[tuple[int, np.ndarray]] = []  # last two decoded frames, for the end clamp
    n = 0
    with closing(iter_video_frames(path)) as decoded:  # closes the container when we stop early
        for k, frame in enumerate(decoded):
            n = k + 1
            if k in wanted:
                gray[k] = prep(frame)
            else:
                tail = (tail + [(k, frame)])[-2:]
            if k >= last_needed:
                break
    for k, frame in tail:  # pair (n-2, n-1) may be needed after clamping
        if k >= n - 2 and k not in gray:
            gray[k] = prep(frame)
    try:
        return gray, flow_pair_starts(idx, n, stack)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def prepare_flow_sample(
    frames_or_video: np.ndarray | str | os.PathLike,
    indices: Sequence[int] | np.ndarray,
    size: int,
    method: str = "tvl1",
    stack: int = 1,
    crop_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    compute_size: int | None = None,
    bound: float = FLOW_BOUND,
    **params: Any,
) -> np.ndarray:
    """Quantised stacked flow at sampled time steps, ready for the prepared cache.

    Args:
        frames_or_video: all frames of a video ``(n, H, W, 3)`` uint8 RGB, or a video path (decoded with PyAV,
            only up to the last frame needed; the frame count is found while decoding, for the end clamp).
        indices: ``F`` sampled frame indices (0-based); step ``i`` stacks pairs (i, i+1) ... (i+L-1, i+L).
        size: output side ``S``. Frames go through ``crop_fn`` (one ``(1, H, W, 3) -> (1, h, w, 3)`` call per
            frame, so it must crop every frame alike, e.g. the RGB alignment crop) and are resized to
            ``compute_size`` (default ``S``; INTER_AREA) before the flow; the flow is then resized to ``S``
            with its vectors rescaled, so values are always pixels of the ``S x S`` output.
        method, params: see :func:`compute_flow`.
    Returns:
        ``(F, S, S, 2L)`` uint8, channels ``[x1, y1, ..., xL, yL]`` (see module docstring).
    """
    if size < 1 or (compute_size is not None and compute_size < 1):
        raise ValueError(f"size and compute_size must be >= 1, got {size} and {compute_size}")
    cs = compute_size or size
    gray: dict[int, np.ndarray] = {}

    def _prep(frame: np.ndarray) -> np.ndarray:
        f = crop_fn(frame[None])[0] if crop_fn is not None else frame
        f = cv2.resize(np.ascontiguousarray(f), (cs, cs), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)

    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if isinstance(frames_or_video, np.ndarray):
        frames = frames_or_video
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames (n, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
        n = len(frames)
        starts = flow_pair_starts(idx, n, stack)
        for j in np.unique(np.concatenate([starts.ravel(), starts.ravel() + 1])):
            gray[int(j)] = _prep(frames[j])
    else:
        gray, starts = _gray_from_video(Path(frames_or_video), idx, stack, _prep)
    fn = _estimator(method, params)
    pair_flow: dict[int, np.ndarray] = {}
    out = np.empty((len(idx), size, size, 2 * stack), dtype=np.uint8)
    for f_i, row in enumerate(starts):
        for l_i, j in enumerate(row.tolist()):
            if j not in pair_flow:
                fl = fn(gray[j], gray[j + 1])
                if cs != size:
                    fl = cv2.resize(fl, (size, size), interpolation=cv2.INTER_LINEAR) * np.float32(size / cs)
                pair_flow[j] = quantize_flow(fl, bound)
            out[f_i, :, :, 2 * l_i : 2 * l_i + 2] = pair_flow[j]
    return out


def flow_for_sample(
    video_path: str | os.PathLike,
    frame_indices: Sequence[int] | np.ndarray,
    crop_fn: Callable[[np.ndarray], np.ndarray] | None,
    size: int,
    method: str = "tvl1",
    stack: int = 1,
    **params: Any,
) -> np.ndarray:
    """What a ``modistill prepare --flow`` worker calls per sample: uint8 ``(F, S, S, 2L)``.

    Same frame indices and crop as the sample's RGB, so flow and RGB stay pixel-aligned.
    """
    return prepare_flow_sample(video_path, frame_indices, size, method, stack, crop_fn=crop_fn, **params)


def flow_cache_path(cache_root: str | os.PathLike, sample: str, modality: str = "flow") -> Path:
    """``<cache>/<modality>/<sample>.npy``, the prepared cache's per-sample layout (modistill.data.cache)."""
    return array_path(cache_root, modality, sample)


def _check_flow_array(arr: np.ndarray, where: str) -> None:
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != arr.shape[2] or arr.shape[3] % 2:
        raise CacheError(f"{where}: expected uint8 flow (F, S, S, 2L), found {arr.dtype} {tuple(arr.shape)}")


def write_flow(
    cache_root: str | os.PathLike, sample: str, flow_u8: np.ndarray, modality: str = "flow"
) -> Path:
    """Store one sample's uint8 ``(F, S, S, 2L)`` flow atomically (temp file + rename); returns the path."""
    path = flow_cache_path(cache_root, sample, modality)
    _check_flow_array(np.asarray(flow_u8), f"{path}")
    save_array_atomic(path, flow_u8)
    return path


def read_flow(
    cache_root: str | os.PathLike, sample: str, modality: str = "flow", mmap: bool = False
) -> np.ndarray:
    """Load one sample's uint8 ``(F, S, S, 2L)`` flow (`cache.load_array` + the flow shape check); `CacheError`
    naming the file if missing or invalid."""
    arr = load_array(cache_root, modality, sample, mmap=mmap)
    _check_flow_array(arr, str(flow_cache_path(cache_root, sample, modality)))
    return arr
