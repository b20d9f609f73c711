"""Depth frames (16-bit PNG sequences or lossless 16-bit depth video) and their 3-channel encodings.

NTU stores one folder per sample holding ``MDepth-%08d.png`` with a 1-based frame number (REF §4); the masked
depth keeps only the body region, everything else is 0. Frame *indices* in this API are 0-based like the
video's, so index ``i`` reads ``MDepth-{i + 1:08d}.png``. Other recordings are read too: a folder of 16-bit
PNGs with other names (ordered by `video.frame_files`: numerically when every name is a number, e.g.
``00000.png``, else by name), or a 16-bit grey video file (FFV1 ``gray16le`` in Matroska, written by
`write_depth_video`; lossless, so the values keep their units). Values are the sensor's units: the
conversion to millimetres (``--depth-scale``) and the plausibility check live in `modistill.data.depth_units`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from modistill.core.errors import ModistillError

from .video import VideoReadError, frame_files, read_gray16_frames, video_frame_count

__all__ = [
    "DEPTH_PATTERN",
    "DepthReadError",
    "depth_frame_files",
    "depth_frame_path",
    "depth_frame_count",
    "read_depth_frames",
    "write_depth_frames",
    "write_depth_video",
    "encode_depth",
    "KINECT_NEAR_MM",
    "KINECT_FAR_MM",
]

DEPTH_PATTERN = "MDepth-{:08d}.png"
_DEPTH_RE = re.compile(r"^MDepth-(\d{8})\.png$")

# Kinect v2's specified depth range is 0.5-4.5 m (Microsoft Kinect for Windows v2 specifications); NTU's
# subjects stand within it, so this range uses the encodings' full resolution without clipping real bodies.
KINECT_NEAR_MM = 500
KINECT_FAR_MM = 4500


class DepthReadError(ModistillError, ValueError):
    """A depth frame is missing, unreadable or not 16-bit single channel; names the file."""


def depth_frame_path(folder: str | Path, index: int) -> Path:
    """Path of 0-based frame ``index`` (file numbers are 1-based)."""
    return Path(folder) / DEPTH_PATTERN.format(int(index) + 1)


def depth_frame_files(folder: str | Path) -> list[Path]:
    """The depth frames of a folder in order: NTU's ``MDepth-%08d.png`` (numbered contiguously from 1) when
    the folder holds any, else every ``*.png`` ordered by `video.frame_files`.

    A gap in the numbering would silently shift depth against the video, so it is an error naming the first
    missing file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DepthReadError(f"{folder}: depth folder not found")
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _DEPTH_RE.match(p.name)))
    if not found:
        try:
            return frame_files(folder, (".png",))
        except VideoReadError as exc:
            raise DepthReadError(str(exc)) from exc
    numbers = [k for k, _ in found]
    if numbers[0] != 1 or numbers[-1] != len(numbers):
        have = set(numbers)
        first_missing = next(k for k in range(1, numbers[-1] + 1) if k not in have)
        raise DepthReadError(
            f"{folder}: depth frames are not numbered contiguously from 1: "
            f"{DEPTH_PATTERN.format(first_missing)} is missing ({len(numbers)} files, last {numbers[-1]})"
        )
    return [p for _, p in found]


def depth_frame_count(path: str | Path) -> int:
    """Number of depth frames of a folder (`depth_frame_files`) or of a depth video (demuxed packets)."""
    path = Path(path)
    if path.is_file():
        try:
            return video_frame_count(path)
        except VideoReadError as exc:
            raise DepthReadError(str(exc)) from exc
    return len(depth_frame_files(path))


def read_depth_frames(path: str | Path, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Read 0-based frames ``indices`` as ``(n, h, w)`` uint16 in the recording's units (0 = no reading).

    ``path`` is a folder of PNGs (`depth_frame_files`) or a 16-bit grey video. Each PNG is read with
    ``cv2.IMREAD_UNCHANGED`` and must be 16-bit single channel: an 8-bit or colour PNG would silently lose
    the depth scale, so it raises ``DepthReadError`` naming the file (a video of another pixel format too).
    """
    path = Path(path)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and idx.min() < 0:
        raise DepthReadError(f"{path}: negative depth frame index {int(idx.min())}")
    if path.is_file():
        try:
            return read_gray16_frames(path, idx)
        except VideoReadError as exc:
            raise DepthReadError(str(exc)) from exc
    files = depth_frame_files(path)
    out: list[np.ndarray] = []
    cache: dict[int, np.ndarray] = {}
    for i in idx.tolist():
        if i not in cache:
            if i >= len(files):
                ntu = bool(files) and _DEPTH_RE.match(files[0].name)
                where = depth_frame_path(path, i) if ntu else path  # NTU: name the file expected
                raise DepthReadError(
                    f"{where}: depth frame index {i} requested but {path} has {len(files)} frames"
                )
            p = files[i]
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise DepthReadError(f"{p}: cannot decode PNG")
            if img.dtype != np.uint16 or img.ndim != 2:
                ch = 1 if img.ndim == 2 else img.shape[2]
                raise DepthReadError(
                    f"{p}: expected a 16-bit single-channel depth PNG, got {img.dtype} x {ch}"
                )
            cache[i] = img
        out.append(cache[i])
    if not out:
        return np.zeros((0, 0, 0), np.uint16)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise DepthReadError(f"{path}: depth frames have different sizes {sorted(shapes)}")
    return np.stack(out)


def write_depth_frames(folder: str | Path, depth: np.ndarray, *, start: int = 0) -> list[Path]:
    """Write ``(n, h, w)`` uint16 frames as ``MDepth-%08d.png`` for 0-based indices ``start..start+n-1``."""
    folder = Path(folder)
    depth = np.asarray(depth)
    if depth.ndim != 3 or depth.dtype != np.uint16:
        raise ValueError(
            f"{folder}: write_depth_frames needs (n, h, w) uint16, got {depth.shape} {depth.dtype}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, frame in enumerate(depth):
        p = depth_frame_path(folder, start + k)
        if not cv2.imwrite(str(p), frame):
            raise OSError(f"{p}: cannot write depth PNG")
        paths.append(p)
    return paths


def write_depth_video(path: str | Path, depth: np.ndarray, *, fps: int = 30) -> Path:
    """Write ``(n, h, w)`` uint16 frames losslessly as FFV1 ``gray16le`` (use a ``.mkv`` path); read back
    unchanged by `read_depth_frames`."""
    import av  # PyAV: only the depth-video paths need it here (video.py imports it anyway)

    path = Path(path)
    depth = np.asarray(depth)
    if depth.ndim != 3 or depth.dtype != np.uint16:
        raise ValueError(f"{path}: write_depth_video needs (n, h, w) uint16, got {depth.shape} {depth.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = depth.shape[2], depth.shape[1], "gray16le"
        for frame in depth:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray16le")
            ):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _jet_lut() -> np.ndarray:
    # OpenCV's COLORMAP_JET applied to 0..255 once; OpenCV returns BGR, so flip to RGB.
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    return cv2.applyColorMap(ramp, cv2.COLORMAP_JET).reshape(256, 3)[:, ::-1].copy()


_JET_RGB = _jet_lut()


def encode_depth(
    depth: np.ndarray,
    mode: str = "jet",
    near_mm: float = KINECT_NEAR_MM,
    far_mm: float = KINECT_FAR_MM,
) -> np.ndarray:
    """Encode ``(..., h, w)`` depth in millimetres as ``(..., h, w, 3)`` uint8 RGB.

    Both modes first normalise ``v = (d - near_mm) / (far_mm - near_mm)`` clipped to [0, 1] (defaults: the
    Kinect v2 range 0.5-4.5 m). The masked background (``d == 0``) is always 0 (black) in every channel.
    - ``"jet"`` (Garcia et al. 2018 supplement §2: depth encoded with the jet colour map): OpenCV's
      ``COLORMAP_JET`` indexed by ``round(255 * (1 - v))``, i.e. **near = red (hot) end, far = blue end**.
      Neither end of jet is black ((0,0,128) blue, (128,0,0) red), so a body stays distinguishable from the
      background at any distance.
    - ``"raw"``: ``round(255 * v)`` replicated to 3 channels (near dark, far bright). A body at or nearer
      than ``near_mm`` maps to 0 like the background; the Kinect cannot measure nearer than 0.5 m anyway.
    """
    d = np.asarray(depth)
    if mode not in ("jet", "raw"):
        raise ValueError(f"encode_depth: unknown mode {mode!r}; use 'jet' or 'raw'")
    if not far_mm > near_mm:
        raise ValueError(f"encode_depth: far_mm ({far_mm}) must be larger than near_mm ({near_mm})")
    v = np.clip((d.astype(np.float32) - np.float32(near_mm)) / np.float32(far_mm - near_mm), 0.0, 1.0)
    fg = d > 0
    if mode == "raw":
        g = np.rint(v * 255.0).astype(np.uint8)
        g[~fg] = 0
        return np.repeat(g[..., None], 3, axis=-1)
    code = np.rint((1.0 - v) * 255.0).astype(np.uint8)
    out = _JET_RGB[code]
    out[~fg] = 0
    return out
