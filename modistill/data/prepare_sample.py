"""One sample of `modistill prepare`: skeleton -> alignment -> frames -> decode -> crop -> encode -> write.

See `modistill.data.prepare` for the job around it (sources, workers, resume, shards, failures file).
Pipeline per sample (a `ManifestEntry`):

1. skeleton -> `fit_alignment` (Garcia et al. 2018 supplement §2). Samples on the official missing-skeleton
   list, without a skeleton file, with 0 bodies or too few tracked joints need a *fallback*: `prepare_sample`
   returns the reason, and the job re-runs them with the median alignment of their (setup, camera) group
   (`AlignmentTable`), recorded as method "fallback" with the reason as a warning. A truncated or malformed
   .skeleton file is a failure (it signals a damaged download), not a fallback.
2. frame counts of rgb / depth / skeleton reconciled (`reconcile_frame_counts`): a mismatch is a warning in
   the index and the common range is used.
3. F evenly spaced source frames (`sample_indices(n, F, "even")`), decoded once (PyAV stops after the last).
4. `crop_aligned` to S x S (depth cropped raw with nearest sampling, then encoded: no invented mixed depths).
   Depth is decoded and checked first (`modistill.data.depth_units`: units per metre, SUN RGB-D's bit
   rotation, plausibility): findings are warnings in the record, depth that is clearly not metric in the
   given units is a failure (``depth_check="fail"``; ``"warn"`` keeps it as a warning, ``"off"`` skips it).
   Without depth (RGB-only / flow data) there is no alignment: the whole frame is resized (method "none").
5. arrays written atomically; the caller appends the returned index record (see `modistill.data.cache`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modistill.core.atomic import save_array_atomic
from modistill.core.errors import ModistillError

from . import cache as C
from .align import (
    Alignment,
    AlignmentError,
    crop_aligned,
    fit_alignment,
    median_alignment,
    reconcile_frame_counts,
)
from .depth import (
    KINECT_FAR_MM,
    KINECT_NEAR_MM,
    DepthReadError,
    depth_frame_count,
    encode_depth,
    read_depth_frames,
)
from .depth_units import (
    DEPTH_CHECK_MODES,
    DEPTH_PRESETS,
    DepthUnits,
    check_depth,
    decode_depth,
    to_millimetres,
)
from .manifest import ManifestEntry
from .ntu import parse_sample_name
from .records import AlignmentRecord, FailureRecord, IndexRecord
from .sampling import sample_indices
from .skeleton import Skeleton, SkeletonFormatError, read_skeleton
from .video import VideoReadError, read_video_frames, video_frame_count

EXIT_FAILURES = 3
ALIGNMENTS = ("skeleton", "registered")


class PrepareError(ModistillError, RuntimeError):
    """The job cannot start (bad source, incompatible existing cache); the message says what to change."""


class SampleFailure(ModistillError):
    """One sample cannot be prepared; ``stage`` is where it failed, the message names the file.

    Raised by `prepare_sample` (public) and turned into a `FailureRecord` by the job; a `ModistillError`
    because it describes a problem with the data, never a bug.
    """

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class PrepareOptions:
    """What each sample is turned into (all of it is recorded in ``cache_config.json``).

    ``modalities``: the arrays to build, ``("rgb",)`` or ``("rgb", "depth")``; None lets `prepare_cache`
    choose from the source (depth when its entries have depth). ``alignment="skeleton"``: NTU-style fit
    from the joints' colour/depth pixel coordinates (+ fallback); ``"registered"``: the depth frame already
    covers the RGB field of view (users' own registered RGB-D), so it is stretched over the whole RGB frame
    and no skeleton is needed. ``depth_units``: how stored depth values become metres (a preset of
    `modistill.data.depth_units.DEPTH_PRESETS` or a custom scale); ``depth_check``: "fail" | "warn" | "off".
    """

    size: int = 112
    frames: int = 16
    depth_encoding: str = "jet"
    near_mm: float = KINECT_NEAR_MM
    far_mm: float = KINECT_FAR_MM
    modalities: tuple[str, ...] | None = ("rgb", "depth")
    alignment: str = "skeleton"
    keep_aspect: bool = False
    depth_units: DepthUnits = DEPTH_PRESETS["mm"]
    depth_check: str = "fail"

    def __post_init__(self) -> None:
        if self.depth_check not in DEPTH_CHECK_MODES:
            raise ValueError(f"depth check must be one of {DEPTH_CHECK_MODES}, got {self.depth_check!r}")
        mods = self.modalities
        if mods is not None and (not mods or mods[0] != "rgb" or not set(mods) <= {"rgb", "depth"}):
            raise ValueError(
                f"modalities to prepare must be rgb or rgb,depth (flow is added by the flow pass), got {mods}"
            )

    def cache_config(self, num_classes: int | None, **source: Any) -> C.CacheConfig:
        """The ``cache_config.json`` of these options; ``source``: `sources.Source.record` fields."""
        mods = tuple(self.modalities or ("rgb", "depth"))
        depth = "depth" in mods
        return C.CacheConfig(
            size=self.size,
            frames=self.frames,
            depth_encoding=self.depth_encoding if depth else None,
            depth_near_mm=float(self.near_mm) if depth else None,
            depth_far_mm=float(self.far_mm) if depth else None,
            depth_scale=float(self.depth_units.scale) if depth else None,
            depth_decode=self.depth_units.decode if depth else None,
            modalities=mods,
            num_classes=num_classes,
            extra={"alignment": self.alignment if depth else "none", "keep_aspect": self.keep_aspect},
            **source,
        )


# ------------------------------------------------------------------------------------- fallback alignment


def group_key(entry: ManifestEntry) -> str:
    """The fallback group of a sample: ``"<setup>|<view>"`` (NTU: setup and camera)."""
    return f"{entry.setup}|{entry.view}"


class AlignmentTable:
    """Median skeleton-fitted alignment per (setup, view) group, with the median over all as last resort.

    Same rule as `modistill.data.align.FallbackTable`, keyed by the manifest's setup/view fields instead of
    parsed NTU names, so users' own data with free-form ids works too.
    """

    def __init__(self, rows: dict[str, list[list[float]]] | None = None) -> None:
        self.rows: dict[str, list[list[float]]] = rows or {}

    def add(self, key: str, a: Alignment) -> None:
        self.rows.setdefault(key, []).append([float(a.scale), float(a.tx), float(a.ty)])

    def __len__(self) -> int:
        return sum(len(v) for v in self.rows.values())

    def get(self, entry: ManifestEntry, reason: str) -> Alignment:
        key = group_key(entry)
        rows, where = self.rows.get(key), f"group setup|view={key}"
        if not rows:
            rows, where = [r for v in self.rows.values() for r in v], "all samples (no fit in its group)"
        if not rows:
            raise SampleFailure(
                "align",
                f"{entry.sample}: {reason}, and no sample of the source has a usable skeleton to borrow an "
                "alignment from (use --alignment registered for pre-registered RGB-D)",
            )
        return median_alignment(rows, where)


def _fit_worker(entry: ManifestEntry) -> tuple[str, list[float] | None]:
    try:
        sk = read_skeleton(entry.skeleton)  # type: ignore[arg-type]
        a = fit_alignment(sk)
    except (OSError, SkeletonFormatError, AlignmentError, ValueError):
        return group_key(entry), None  # failures are reported when the sample itself is processed
    return group_key(entry), [a.scale, a.tx, a.ty]


# ------------------------------------------------------------------------------------------- one sample


def _alignment_of(
    entry: ManifestEntry, opts: PrepareOptions, missing: frozenset[str]
) -> tuple[Skeleton | None, Alignment | None, str | None]:
    """(skeleton or None, fitted alignment or None, reason a fallback is needed or None)."""
    if "depth" not in (opts.modalities or ()):  # RGB only: nothing to align, the whole frame is resized
        return None, Alignment(scale=1.0, tx=0.0, ty=0.0, method="none"), None
    if opts.alignment == "registered":
        return None, Alignment(scale=1.0, tx=0.0, ty=0.0, method="registered"), None
    if entry.sample in missing:
        return None, None, "on the official missing-skeleton list"
    if entry.skeleton is None:
        return None, None, "no skeleton file"
    if not Path(entry.skeleton).is_file():
        raise SampleFailure("skeleton", f"{entry.skeleton}: skeleton file not found")
    try:
        sk = read_skeleton(entry.skeleton)
    except SkeletonFormatError as exc:
        raise SampleFailure("skeleton", str(exc)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SampleFailure("skeleton", f"{entry.skeleton}: unreadable skeleton file ({exc})") from exc
    if sk.num_bodies == 0:
        return sk, None, f"{entry.skeleton.name}: 0 bodies in the skeleton file"
    try:
        return sk, fit_alignment(sk), None
    except AlignmentError as exc:
        return sk, None, f"skeleton fit failed ({exc})"


def _frame_counts(entry: ManifestEntry, opts: PrepareOptions, sk: Skeleton | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        counts["rgb"] = video_frame_count(entry.rgb)
    except (FileNotFoundError, VideoReadError) as exc:
        raise SampleFailure("rgb", str(exc)) from exc
    if counts["rgb"] < 1:
        raise SampleFailure("rgb", f"{entry.rgb}: the video has no frames")
    if "depth" in (opts.modalities or ()):
        if entry.depth is None:
            raise SampleFailure(
                "depth",
                f"{entry.sample}: no depth given (the manifest's 'depth' is empty); prepare RGB only with "
                "--modalities rgb, or give this sample's depth",
            )
        if not Path(entry.depth).exists():
            raise SampleFailure("depth", f"{entry.depth}: depth folder or video not found")
        try:
            counts["depth"] = depth_frame_count(entry.depth)
        except DepthReadError as exc:
            raise SampleFailure("depth", str(exc)) from exc
        if counts["depth"] < 1:
            raise SampleFailure("depth", f"{entry.depth}: no depth frames (16-bit PNGs or a depth video)")
    if sk is not None and sk.num_frames > 0:
        counts["skeleton"] = sk.num_frames
    return counts


def prepare_sample(
    entry: ManifestEntry,
    out: str | os.PathLike,
    opts: PrepareOptions,
    missing: frozenset[str] = frozenset(),
    fallback: AlignmentTable | None = None,
) -> IndexRecord | str:
    """Prepare one sample into ``out``; returns its index record, or the reason a fallback alignment is needed
    when ``fallback`` is None and the sample has no usable skeleton. Raises `SampleFailure`."""
    if opts.modalities is None:
        raise ValueError("prepare_sample needs the modalities to build (prepare_cache chooses them for None)")
    warnings: list[str] = []
    sk, alignment, reason = _alignment_of(entry, opts, missing)
    if alignment is None:
        if fallback is None:
            return str(reason)
        alignment = fallback.get(entry, str(reason))
        warnings.append(f"fallback alignment: {reason}")
    counts = _frame_counts(entry, opts, sk)
    n, mismatch = reconcile_frame_counts(counts)
    if mismatch:
        warnings.append(mismatch)
    if n < opts.frames:
        warnings.append(f"only {n} frames for a budget of {opts.frames}: some kept frames repeat")
    idx = sample_indices(n, opts.frames, "even")
    arrays = _sample_arrays(entry, opts, alignment, idx, warnings)
    for m in opts.modalities or ():
        try:
            save_array_atomic(C.array_path(out, m, entry.sample), arrays[m])
        except OSError as exc:
            raise SampleFailure(
                "write", f"{C.array_path(out, m, entry.sample)}: cannot write ({exc})"
            ) from exc
    return _index_record(entry, opts, idx, counts, alignment, warnings, arrays)


def _sample_arrays(
    entry: ManifestEntry, opts: PrepareOptions, alignment: Alignment, idx: np.ndarray, warnings: list[str]
) -> dict[str, np.ndarray]:
    """Decode frames ``idx``, check the depth (findings appended to ``warnings``), crop both modalities to
    S x S and encode the depth: modality -> uint8 array."""
    try:
        rgb = read_video_frames(entry.rgb, idx)
    except (FileNotFoundError, VideoReadError) as exc:
        raise SampleFailure("rgb", str(exc)) from exc
    if "depth" not in (opts.modalities or ()):  # RGB only: the whole frame, resized
        import cv2

        S = opts.size
        return {"rgb": np.stack([cv2.resize(f, (S, S), interpolation=cv2.INTER_AREA) for f in rgb])}
    try:
        depth = decode_depth(read_depth_frames(entry.depth, idx), opts.depth_units.decode)  # type: ignore[arg-type]
    except DepthReadError as exc:
        raise SampleFailure("depth", str(exc)) from exc
    if opts.depth_check != "off":
        found = check_depth(depth, opts.depth_units, opts.near_mm, opts.far_mm)
        if found.failure and opts.depth_check == "fail":
            raise SampleFailure("depth", f"{entry.depth}: {found.failure} (or --depth-check warn)")
        warnings.extend(found.warnings)
        if found.failure:
            warnings.append(f"depth check: {found.failure}")
    kw: dict[str, Any] = {}
    if opts.alignment == "registered":
        H, W = rgb.shape[1:3]
        kw = {"nominal_color": (W, H), "nominal_depth": (W, H)}
    try:
        rgb_c, depth_c = crop_aligned(rgb, depth, alignment, opts.size, keep_aspect=opts.keep_aspect, **kw)
    except AlignmentError as exc:
        raise SampleFailure("align", f"{entry.sample}: {exc}") from exc
    depth_mm = to_millimetres(depth_c, opts.depth_units.scale)
    return {"rgb": rgb_c, "depth": encode_depth(depth_mm, opts.depth_encoding, opts.near_mm, opts.far_mm)}


def _index_record(
    entry: ManifestEntry,
    opts: PrepareOptions,
    idx: np.ndarray,
    counts: dict[str, int],
    a: Alignment,
    warnings: list[str],
    arrays: dict[str, np.ndarray],
) -> IndexRecord:
    try:
        n = parse_sample_name(entry.sample)
        action, replication = n.action, n.replication
    except ValueError:
        action, replication = None, None
    return IndexRecord(
        name=entry.sample,
        label=int(entry.label),
        action=action,
        subject=entry.subject,
        camera=entry.view,
        setup=entry.setup,
        replication=replication,
        split=entry.split,
        frames=int(opts.frames),
        source_frames=[int(i) for i in idx],
        source_frame_counts={k: counts.get(k) for k in ("rgb", "depth", "skeleton")},
        alignment=AlignmentRecord(
            scale=_num(a.scale),
            tx=_num(a.tx),
            ty=_num(a.ty),
            n_pairs=int(a.n_pairs),
            method=a.method,
            residual_px=_num(a.residual_px),
            note=a.note,
        ),
        warnings=warnings,
        shape={m: list(arrays[m].shape) for m in opts.modalities or ()},
    )


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _sample_worker(task: tuple[ManifestEntry, str, PrepareOptions, frozenset[str], AlignmentTable | None]):
    """Never raises: ("ok", record) | ("fallback", name, reason) | ("fail", failure dict)."""
    entry, out, opts, missing, table = task
    try:
        res = prepare_sample(entry, out, opts, missing, table)
    except SampleFailure as exc:
        return ("fail", FailureRecord(sample=entry.sample, stage=exc.stage, error=str(exc)))
    except Exception as exc:  # noqa: BLE001 - one bad sample must not stop the job; the error is recorded
        error = f"{type(exc).__name__}: {exc}"
        return ("fail", FailureRecord(sample=entry.sample, stage="unexpected", error=error))
    if isinstance(res, str):
        return ("fallback", entry.sample, res)
    return ("ok", res)
