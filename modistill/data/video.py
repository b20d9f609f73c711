"""RGB video reading with PyAV: decode only the frames needed, count frames robustly.

A "video" may also be a folder of frame images (registered RGB-D recordings often come as image sequences):
`frame_files` orders them, and every reader here accepts either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from modistill.core.errors import ModistillError

from .decode_plan import decode_planned, packet_table, plannable

if TYPE_CHECKING:
    import av


def _av():
    """PyAV, imported on first use: `modistill.data` (caches, datasets, training from a prepared cache) must
    import on machines without PyAV, such as a GPU box that only trains; only decoding and writing need it."""
    import av

    return av

__all__ = [
    "IMAGE_SUFFIXES",
    "declared_frame_count",
    "VideoReadError",
    "frame_files",
    "iter_video_frames",
    "read_gray16_frames",
    "read_video_frames",
    "video_frame_count",
    "write_video",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class VideoReadError(ModistillError, ValueError):
    """A video cannot be opened or decoded, or a requested frame does not exist; names the file."""


def _open(path: Path) -> av.container.InputContainer:
    av = _av()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as e:
        raise VideoReadError(f"{path}: cannot open video ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: no video stream")
    return container


def frame_files(folder: str | Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The images of a frame folder in frame order (files with other suffixes and hidden files are ignored).

    When every name's stem is an integer (``00000.png``, ``frame_12.jpg`` is not), frames are ordered by that
    number and the numbers must be contiguous: a gap would shift this stream against the other modality, so
    it is a `VideoReadError` naming the first missing number. Other names (e.g. TUM's timestamps) are ordered
    by name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: frame folder not found")
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
    ]
    if files and all(re.fullmatch(r"\d+", p.stem) for p in files):
        files.sort(key=lambda p: int(p.stem))
        numbers = [int(p.stem) for p in files]
        if numbers[-1] - numbers[0] + 1 != len(numbers):
            have = set(numbers)
            gap = next(k for k in range(numbers[0], numbers[-1] + 1) if k not in have)
            raise VideoReadError(
                f"{folder}: frame files are not numbered contiguously: number {gap} is missing "
                f"({len(numbers)} files, {numbers[0]}..{numbers[-1]})"
            )
        return files
    return sorted(files, key=lambda p: p.name)


def _read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # 8-bit BGR, grey images expanded to 3 channels
    if img is None:
        raise VideoReadError(f"{path}: cannot decode image")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if size is not None and (img.shape[1], img.shape[0]) != tuple(size):
        img = cv2.resize(img, (int(size[0]), int(size[1])), interpolation=cv2.INTER_AREA)
    return img


def video_frame_count(path: str | Path) -> int:
    """Number of frames of the first video stream, counted by demuxing packets (no decoding); for a folder of
    frame images, the number of images (`frame_files`).

    Container headers (AVI ``nframes``, MP4 ``nb_frames``) are absent for some codecs/containers and wrong
    for edited files, so we count the non-empty packets of the stream instead: cheap, since nothing is
    decoded. For intra/inter-coded streams without frame reordering loss this equals the decoded count.
    """
    av = _av()
    path = Path(path)
    if path.is_dir():
        return len(frame_files(path))
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
    converting at full resolution and resizing after). ``path`` may be a folder of frame images
    (`frame_files`); only the requested images are read.

    Raises ``VideoReadError`` naming the file for unreadable videos, and naming the file, the index and the
    real frame count when an index is past the end.
    """
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        want = np.arange(len(files)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if want.size == 0:
            if indices is None:
                raise VideoReadError(
                    f"{path}: the frame folder holds no images ({', '.join(IMAGE_SUFFIXES)})"
                )
            return np.zeros((0, 0, 0, 3), np.uint8)
        _check_range(path, want, len(files))
        got = {int(i): _read_image(files[int(i)], size) for i in np.unique(want)}
        if len({a.shape for a in got.values()}) > 1:
            raise VideoReadError(
                f"{path}: frame images have different sizes {sorted({a.shape for a in got.values()})}"
            )
        return np.stack([got[int(i)] for i in want])
    kw: dict[str, Any] = {"format": "rgb24"}
    if size is not None:
        kw.update(width=int(size[0]), height=int(size[1]))
    out = _decode_selected(path, indices, lambda frame: frame.to_ndarray(**kw))
    return out if out.size or indices is None else np.zeros((0, 0, 0, 3), np.uint8)


def read_gray16_frames(path: str | Path, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Decode frames ``indices`` of a 16-bit grey video (e.g. depth as FFV1 ``gray16le`` in Matroska) as
    ``(n, H, W)`` uint16, values unchanged. Any other pixel format (8-bit grey, YUV) is a `VideoReadError`:
    converting it would invent or lose depth units."""
    path = Path(path)

    def convert(frame: Any) -> np.ndarray:
        fmt = frame.format.name
        if fmt not in ("gray16le", "gray16be"):
            raise VideoReadError(
                f"{path}: pixel format {fmt} is not 16-bit grey; store depth losslessly as gray16le "
                "(e.g. FFV1 in .mkv: modistill.data.depth.write_depth_video)"
            )
        return frame.to_ndarray(format="gray16le")

    out = _decode_selected(path, indices, convert)
    return out if out.size or indices is None else np.zeros((0, 0, 0), np.uint16)


def _check_range(path: Path, want: np.ndarray, n: int) -> None:
    if want.size and want.min() < 0:
        raise VideoReadError(f"{path}: negative frame index {int(want.min())}")
    if want.size and want.max() >= n:
        raise VideoReadError(
            f"{path}: frame index {int(want.max())} requested but the video has only {n} frames "
            f"(valid indices 0..{n - 1})"
        )


def _decode_selected(
    path: Path, indices: Sequence[int] | np.ndarray | None, convert: Callable[[Any], np.ndarray]
) -> np.ndarray:
    """``convert(frame)`` of the frames ``indices`` (None: all) of the first video stream, stacked.

    Selected frames are decoded by `decode_plan` (only the packets they need; bit-identical); when timestamps
    cannot number the frames, sequentially up to the last requested one, numbering frames by counting."""
    want: np.ndarray | None = None
    if indices is not None:
        want = np.asarray(indices, dtype=np.int64).reshape(-1)
        if want.size and want.min() < 0:
            raise VideoReadError(f"{path}: negative frame index {int(want.min())}")
        if want.size == 0:
            return np.zeros((0,), np.uint8)
        container = _open(path)
        if not plannable(container, container.streams.video[0]):
            return _decode_sequential(path, want, convert, container)  # opening probes: do it once
        got = _decode_with_plan(path, container, want, convert)
        if got is not None:
            return np.stack([got[int(i)] for i in want])
    return _decode_sequential(path, want, convert)


def _decode_with_plan(
    path: Path, container: Any, want: np.ndarray, convert: Callable[[Any], np.ndarray]
) -> dict[int, np.ndarray] | None:
    """The planned decode (`decode_plan`); ``container``: ``path`` opened, read for the table, then closed."""
    av = _av()
    try:
        table = packet_table(container, container.streams.video[0])
    except av.FFmpegError as e:
        raise VideoReadError(f"{path}: cannot demux video ({e})") from e
    finally:
        container.close()
    if table is None or table.frames == 0:
        return None
    _check_range(path, want, table.frames)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return decode_planned(container, stream, table, want, convert)
    except av.FFmpegError:
        return None  # a damaged stream: the sequential decode reports where it fails, naming the file
    finally:
        container.close()


def _decode_sequential(
    path: Path, want: np.ndarray | None, convert: Callable[[Any], np.ndarray], container: Any = None
) -> np.ndarray:
    """Decode in order, numbering frames by counting; ``container``: ``path`` freshly opened, or None."""
    av = _av()
    container = container if container is not None else _open(path)
    frames: dict[int, np.ndarray] = {}
    all_frames: list[np.ndarray] = []
    last = int(want.max()) if want is not None else -1
    targets = set(want.tolist()) if want is not None else set()
    n_decoded = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            idx = n_decoded
            n_decoded += 1
            if want is None:
                all_frames.append(convert(frame))
                continue
            if idx in targets:
                frames[idx] = convert(frame)
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
    _check_range(path, want, n_decoded if last >= n_decoded else last + 1)
    return np.stack([frames[int(i)] for i in want])


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of a video (PyAV) or a frame folder, in order, as ``(H, W, 3)`` uint8 RGB; decoding
    stops when the caller stops iterating (close the generator to release the container)."""
    av = _av()
    path = Path(path)
    if path.is_dir():
        for f in frame_files(path):
            yield _read_image(f, None)
        return
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        try:
            for frame in container.decode(stream):
                n += 1
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise VideoReadError(f"{path}: decoding failed after {n} frames ({exc})") from exc


def write_video(path: str | Path, frames: np.ndarray, *, fps: int = 30, codec: str = "mpeg4") -> None:
    """Write ``(n, H, W, 3)`` uint8 RGB frames to a video (for tests and the synthetic generator).

    ``mpeg4`` in AVI is available in every PyAV build; H and W are rounded down to even sizes by the caller's
    responsibility (yuv420p needs even dimensions), else a ``ValueError`` is raised.
    """
    av = _av()
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


def declared_frame_count(video: str | Path) -> int | None:
    """The frame count a video container's header declares (AVI ``nframes``, MP4 ``nb_frames``), or None when
    it declares none (or ``video`` is not a container file, e.g. a folder of frames). A truncated file keeps its
    header, so a declared count above `video_frame_count` (the packets actually present) flags a cut or
    damaged file."""
    path = Path(video)
    if not path.is_file():
        return None
    av = _av()
    try:
        with av.open(str(path), mode="r") as container:
            n = int(container.streams.video[0].frames or 0) if container.streams.video else 0
    except (av.FFmpegError, OSError):
        return None  # unreadable: video_frame_count reports it, naming the file
    return n if n > 0 else None
