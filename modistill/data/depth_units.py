"""Depth you can trust: the units of a recording (presets), their conversion to millimetres, and a
plausibility check run on every depth sample `modistill prepare` reads.

A 16-bit depth value means nothing without its scale. The presets (``--depth-scale NAME``; a number is units
per metre):

- ``mm`` (aliases ``kinect``, ``ntu``, ``redwood``): 1000 units per metre, no decoding. Kinect v2 SDK and
  NTU RGB+D masked depth (REF §4); Redwood RGB-D (Open3D test data; ../shared/fixtures/real/README.md).
- ``tum``: 5000 units per metre. TUM RGB-D benchmark, "File Formats" page: "a pixel value of 5000 in the
  depth image corresponds to a distance of 1 meter".
- ``sunrgbd``: 1000 units per metre after undoing a 3-bit rotation. SUN RGB-D toolbox ``read3dPoints.m`` and
  SUN3D ``depthRead.m`` (PrincetonVision/SUN3Dsfm): ``bitor(bitshift(d, -3), bitshift(d, 16 - 3))``, then
  ``/ 1000`` for metres.
- ``nyu-raw``: refused. NYU Depth V2 raw frames are Kinect v1 *disparity*: the NYU toolbox's
  ``depth_rel2depth_abs.m`` computes metres as ``351.3 / (1092.5 - d)`` (after ``swapbytes``), no scale.

The check (`check_depth`) looks at the raw frames of a sample in metres: the fraction of pixels with a
reading, the median reading, how many readings fall outside the encoding range (and so get one colour), and
the number of distinct values. It returns warnings (written to the index record and the warnings file) and,
when the depth is clearly not metric in the given units, a failure message (the sample is listed in the
failures file; the job goes on). Thresholds (`CHECK_LIMITS`): readings on fewer than 1 % of the pixels, a
median outside 0.3-8 m, 30 % of the readings beyond one end of the range, or fewer than 8 distinct values
warn; a median outside 0.1-20 m or 80 % of the readings beyond one end fails. The Kinect v2 measures 0.5-4.5 m;
common indoor RGB-D sensors 0.2-10 m. Disparity read as millimetres can pass (its values lie near 0.3-1.1 "m"),
which is why ``nyu-raw`` is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modistill.core.errors import ModistillError

__all__ = [
    "CHECK_LIMITS",
    "DEPTH_CHECK_MODES",
    "DEPTH_DECODINGS",
    "DEPTH_PRESETS",
    "DepthCheck",
    "DepthUnits",
    "DepthUnitsError",
    "check_depth",
    "decode_depth",
    "parse_depth_units",
    "to_millimetres",
]

DEPTH_DECODINGS = ("plain", "sunrgbd")
DEPTH_CHECK_MODES = ("fail", "warn", "off")


class DepthUnitsError(ModistillError, ValueError):
    """An unknown depth preset, a non-positive scale, or depth that is not metric (e.g. NYU raw disparity)."""


@dataclass(frozen=True)
class DepthUnits:
    """How stored depth values become metres: ``decode`` them ("plain" or "sunrgbd"), then divide by
    ``scale`` (units per metre)."""

    name: str
    scale: float
    decode: str = "plain"


_MM = DepthUnits("mm", 1000.0)
DEPTH_PRESETS: dict[str, DepthUnits] = {
    "mm": _MM,
    "kinect": _MM,
    "ntu": _MM,
    "redwood": _MM,
    "tum": DepthUnits("tum", 5000.0),
    "sunrgbd": DepthUnits("sunrgbd", 1000.0, "sunrgbd"),
}
_NOT_METRIC = {
    "nyu-raw": (
        "NYU Depth V2 raw depth is Kinect v1 disparity, not a metric scale (the NYU toolbox converts it with "
        "depth_rel2depth_abs: metres = 351.3 / (1092.5 - d), after swapbytes, then projects it onto the RGB "
        "frame); convert it with the toolbox and store millimetres (16-bit PNG), then use --depth-scale mm"
    ),
}


def parse_depth_units(text: str | float) -> DepthUnits:
    """A preset name (`DEPTH_PRESETS`) or a number of units per metre (``"1000"``, ``"5000"``, ``"1e3"``)."""
    key = str(text).strip().lower()
    if key in DEPTH_PRESETS:
        return DEPTH_PRESETS[key]
    if key in _NOT_METRIC:
        raise DepthUnitsError(f"--depth-scale {text}: {_NOT_METRIC[key]}")
    try:
        scale = float(key)
    except ValueError:
        names = ", ".join([*DEPTH_PRESETS, *_NOT_METRIC])
        raise DepthUnitsError(
            f"--depth-scale {text!r}: expected units per metre (e.g. 1000 for millimetres) or one of {names}"
        ) from None
    if not np.isfinite(scale) or scale <= 0:
        raise DepthUnitsError(f"--depth-scale {text!r}: units per metre must be a positive number")
    return DepthUnits("custom", scale)


def decode_depth(raw: np.ndarray, decode: str = "plain") -> np.ndarray:
    """Stored uint16 values -> depth values in the recording's units (uint16).

    ``"sunrgbd"``: SUN RGB-D / SUN3D store each value rotated left by 3 bits; the toolboxes rotate it back,
    ``(v >> 3) | (v << 13)`` in 16 bits (``depthRead.m``: ``bitor(bitshift(d, -3), bitshift(d, 16 - 3))``).
    """
    if decode == "plain":
        return raw
    if decode == "sunrgbd":
        v = np.asarray(raw, dtype=np.uint16)
        return (v >> np.uint16(3)) | (v << np.uint16(13))
    raise DepthUnitsError(f"depth decoding must be one of {DEPTH_DECODINGS}, got {decode!r}")


def to_millimetres(depth: np.ndarray, scale: float) -> np.ndarray:
    """Depth values at ``scale`` units per metre -> millimetres (unchanged uint16 when already mm; float32
    otherwise). 0 (no reading) stays 0."""
    if scale == 1000.0:
        return depth
    return depth.astype(np.float32) * np.float32(1000.0 / scale)


# name -> (warning threshold, failure threshold); see the module docstring.
CHECK_LIMITS: dict[str, tuple[float, float] | tuple[tuple[float, float], tuple[float, float]] | float] = {
    "valid_fraction": 0.01,  # warn below (no failure: masked depth can be small, and RGB is still usable)
    "median_m": ((0.3, 8.0), (0.1, 20.0)),  # (warn outside, fail outside)
    "clipped": (0.30, 0.80),  # fraction of readings beyond one end of the encoding range: warn, fail
    "levels": 8.0,  # warn below
}


@dataclass
class DepthCheck:
    """Outcome of `check_depth`: ``stats`` (valid_fraction, median_m, beyond_far, below_near, levels),
    ``warnings`` (messages), ``failure`` (a message when the depth is clearly not metric in these units)."""

    stats: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failure: str | None = None


def check_depth(depth: np.ndarray, units: DepthUnits, near_mm: float, far_mm: float) -> DepthCheck:
    """Plausibility of decoded depth frames ``(n, h, w)`` (values in ``units``; 0 = no reading) against the
    encoding range ``near_mm``..``far_mm`` (module docstring: what is checked and the limits)."""
    out = DepthCheck()
    d = np.asarray(depth)
    valid = d[d > 0]
    frac = float(valid.size) / max(1, d.size)
    out.stats["valid_fraction"] = round(frac, 4)
    given = units.name if units.name != "custom" else f"{units.scale:g}"
    hint = f"(--depth-scale {given} = {units.scale:g} units/m)"
    if valid.size == 0:
        out.warnings.append(f"depth check: no depth reading in any kept frame {hint}")
        return out
    # In the stored units (no float copy of every pixel): thresholds scaled instead; distinct values counted
    # with a histogram (O(n), unlike np.unique's sort). A few ms for 16 frames of 512x424.
    per_mm = units.scale / 1000.0
    med = float(np.median(valid)) / units.scale
    far = float(np.count_nonzero(valid > far_mm * per_mm)) / valid.size
    near = float(np.count_nonzero(valid < near_mm * per_mm)) / valid.size
    levels = (
        int(np.count_nonzero(np.bincount(valid.ravel())))
        if valid.dtype.kind == "u"
        else np.unique(valid).size
    )
    out.stats.update(
        median_m=round(med, 4), beyond_far=round(far, 4), below_near=round(near, 4), levels=levels
    )
    (warn_lo, warn_hi), (fail_lo, fail_hi) = CHECK_LIMITS["median_m"]  # type: ignore[misc]
    warn_clip, fail_clip = CHECK_LIMITS["clipped"]  # type: ignore[misc]
    advice = "check --depth-scale (tum = 5000/m, sunrgbd = bit-rotated mm) or the range --near-mm/--far-mm"
    if not fail_lo <= med <= fail_hi:
        out.failure = (
            f"depth is not plausible metric depth: median reading {med:.3g} m {hint}, outside {fail_lo}-{fail_hi} m; "
            f"{advice}"
        )
    elif max(far, near) >= fail_clip:
        side, end = ("beyond --far-mm", far_mm) if far >= near else ("nearer than --near-mm", near_mm)
        out.failure = (
            f"depth is not plausible metric depth: {max(far, near):.0%} of the readings lie {side} {end:g} mm "
            f"and would all get one colour (median {med:.3g} m {hint}); {advice}"
        )
    if frac < CHECK_LIMITS["valid_fraction"]:  # type: ignore[operator]
        out.warnings.append(f"depth check: only {frac:.2%} of the pixels have a depth reading")
    if not warn_lo <= med <= warn_hi and out.failure is None:
        out.warnings.append(
            f"depth check: median reading {med:.3g} m {hint} is outside {warn_lo}-{warn_hi} m"
        )
    if warn_clip <= max(far, near) and out.failure is None:
        side = f"beyond --far-mm {far_mm:g}" if far >= near else f"nearer than --near-mm {near_mm:g}"
        out.warnings.append(f"depth check: {max(far, near):.0%} of the readings lie {side} mm (one colour)")
    if levels < CHECK_LIMITS["levels"]:  # type: ignore[operator]
        out.warnings.append(
            f"depth check: only {levels} distinct depth values (a mask, a constant, or depth in coarse units?)"
        )
    return out
