"""RGB video reading with PyAV: decode only the frames needed, count frames robustly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modistill.core.errors import ModistillError

if TYPE_CHECKING:
    import av


def _av():
    """PyAV, imported on first use: `modistill.data` (caches, datasets, training from a prepared cache) must
    import on machines without PyAV, such as a GPU box that only trains; only decoding and writing need it."""
    import av

    return av

__all__ = ["VideoReadError", "read_video_frames", "video_frame_count", "write_video"]


class VideoReadError(ModistillError, ValueError):
    """A video cannot be opened or decoded, or a requested frame does not exist; names the file."""


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    av = _av()
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as e:
        raise VideoReadError(f"{path}: cannot open video ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: no video stream")
    return container


def video_frame_count(path: str | Path) -> int:
    """Number of frames of the first video stream, counted by demuxing packets (no decoding).

    Container headers (AVI ``nframes``, MP4 ``nb_frames``) are absent for some codecs/containers and wrong
    for edited files, so we count the non-empty packets of the stream instead: cheap, since nothing is
    decoded. For intra/inter-coded streams without frame reordering loss this equals the decoded count.
    """
    path = Path(path)
    av = _av()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        n = 0
        for packet in container.demux(stream):
            if packet.size > 0:
                n += 1
        return n
    except av.FFmpegError as e:
        raise VideoReadError(f"{path}: cannot demux video ({e})") from e
    finally:
        container.close()


def read_video_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode frames ``indices`` (0-based; any order, repeats allowed) as ``(n, H, W, 3)`` uint8 RGB.

    ``indices=None`` decodes every frame. Decoding is sequential (the only exact way for inter-coded video)
    and stops after the last requested index; ``thread_type="AUTO"`` lets FFmpeg decode with frame and slice
    threads. ``size=(width, height)`` rescales in libswscale during colour conversion (cheaper than
    converting at full resolution and resizing after).

    Raises ``VideoReadError`` naming the file for unreadable videos, and naming the file, the index and the
    real frame count when an index is past the end.
    """
    path = Path(path)
    want: np.ndarray | None = None
    if indices is not None:
        want = np.asarray(indices, dtype=np.int64).reshape(-1)
        if want.size and want.min() < 0:
            raise VideoReadError(f"{path}: negative frame index {int(want.min())}")
    av = _av()
    container = _open(path)
    frames: dict[int, np.ndarray] = {}
    all_frames: list[np.ndarray] = []
    last = int(want.max()) if want is not None and want.size else -1
    targets = set(want.tolist()) if want is not None else set()
    n_decoded = 0
    try:
        if want is not None and want.size == 0:
            return np.zeros((0, 0, 0, 3), np.uint8)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        kw = {"format": "rgb24"}
        if size is not None:
            kw.update(width=int(size[0]), height=int(size[1]))
        for frame in container.decode(stream):
            idx = n_decoded
            n_decoded += 1
            if want is None:
                all_frames.append(frame.to_ndarray(**kw))
                continue
            if idx in targets:
                frames[idx] = frame.to_ndarray(**kw)
            if idx >= last:
                break
    except av.FFmpegError as e:
        raise VideoReadError(f"{path}: decoding failed after {n_decoded} frames ({e})") from e
    finally:
        container.close()
    if want is None:
        if not all_frames:
            raise VideoReadError(f"{path}: the video has no decodable frames")
        return np.stack(all_frames)
    if last >= n_decoded:
        raise VideoReadError(
            f"{path}: frame index {last} requested but the video has only {n_decoded} frames "
            f"(valid indices 0..{n_decoded - 1})"
        )
    return np.stack([frames[int(i)] for i in want])


def write_video(path: str | Path, frames: np.ndarray, *, fps: int = 30, codec: str = "mpeg4") -> None:
    """Write ``(n, H, W, 3)`` uint8 RGB frames to a video (for tests and the synthetic generator).

    ``mpeg4`` in AVI is available in every PyAV build; H and W are rounded down to even sizes by the caller's
    responsibility (yuv420p needs even dimensions), else a ``ValueError`` is raised.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"{path}: write_video needs (n, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}"
        )
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"{path}: frame size {w}x{h} must be even for yuv420p")
    path.parent.mkdir(parents=True, exist_ok=True)
    av = _av()
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # A constant high quality for MPEG-4 (FFmpeg's `-qscale` is a command-line flag, not a codec option: as a
        # codec option it is silently ignored; qmin = qmax pins the quantiser instead).
        stream.options = {"qmin": "2", "qmax": "2"} if codec == "mpeg4" else {}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
