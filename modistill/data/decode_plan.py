"""Decode only what the requested frames need (used by `video.read_video_frames` and `read_gray16_frames`).

A decoder outputs frames in display order, and a frame's display index is the rank of its presentation
timestamp (pts) among the stream's packets. One demux pass (reading packets, no decoding; a few milliseconds)
gives every packet's pts and whether it is a keyframe (a random-access point, where FFmpeg's own seeking starts
decoding). Then, for the requested frames:

- **Whole ranges are not decoded at all.** A requested frame needs only the packets from the last keyframe
  before it (in decode order, with a pts not after the frame's, so that an open-GOP leading picture goes back
  to the previous keyframe) up to its own packet. Packets outside every such range are not sent to the
  decoder; before a jump the decoder is drained (its delayed frames come out) and reset. For an intra-only
  stream (MJPEG) this decodes the requested frames and nothing else; for a long video with regular keyframes
  (FFV1 depth videos, most H.264 encodes), only the groups of pictures that hold a requested frame.
- **Non-reference frames are skipped inside a range.** A packet that is not a requested frame is decoded with
  ``skip_frame = "NONREF"`` (FFmpeg's AVDISCARD_NONREF): the decoder drops it only when no other frame
  references it (H.264 non-reference pictures, MPEG-4 part 2 B-frames), so every frame it does decode is
  bit-identical to sequential decoding. For 5 evenly spaced frames of the real Kinetics fixture clip
  ``arm_wrestling.mp4`` (H.264, 280 frames, 4 keyframes) 175 packets reach the decoder and 109 frames are
  decoded, instead of all 280.

When nothing gives the display order (`packet_table` returns None: e.g. packed MPEG-4 B-frames in AVI; H.264
in AVI, such as the real NTU RGB+D videos, is ordered by its slice headers, `h264_order`) or the decoder
contradicts it (`decode_planned` returns None: a decoded frame whose pts is not a packet's, or out of display
order), the caller decodes sequentially, numbering frames by counting, as before. Exactness against
sequential decoding is tested on the real fixture videos (H.264 in AVI and MP4, MPEG-4 part 2) and on
generated ones (H.264 in AVI and Matroska, open and closed GOPs; tests/test_data_decode_plan.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .h264_order import display_keys

__all__ = ["DecodeStats", "PacketTable", "decode_planned", "needed_packets", "packet_table", "plannable"]


STORES_PTS = frozenset({"mov", "mp4", "matroska", "webm", "mpegts", "flv"})
"""FFmpeg demuxer names of containers that store each frame's presentation time (MP4/MOV composition
offsets, Matroska block timestamps, MPEG-TS PES pts, FLV composition time)."""


@dataclass(frozen=True)
class PacketTable:
    """The non-empty packets of a video stream in decode order: ``pts`` (P,) int64 (they identify packets
    and the frames decoded from them), ``key`` (P,) bool (keyframes) and ``order`` (P,) int64, keys whose
    order is the display order (the pts themselves where the container stores them; for H.264 in AVI,
    `h264_order.display_keys`)."""

    pts: np.ndarray
    key: np.ndarray
    order: np.ndarray

    @property
    def frames(self) -> int:
        return len(self.pts)

    def display_order(self) -> np.ndarray:
        """(P,) decode positions of display indices 0..P-1."""
        return np.argsort(self.order, kind="stable")


@dataclass
class DecodeStats:
    """What one planned decode did (for tests and benchmarks): packets sent to the decoder and frames it
    output, against the packets of the stream up to the last requested frame."""

    sent: int = 0
    output: int = 0
    span: int = 0


def _order_from_bitstream(container: Any, stream: Any) -> bool:
    """Frames are reordered (B-frames) and the container stores no presentation times."""
    stores_pts = bool(STORES_PTS & set(container.format.name.split(",")))
    return bool(stream.codec_context.has_b_frames) and not stores_pts


def plannable(container: Any, stream: Any) -> bool:
    """Whether `packet_table` can order the frames, from the opened stream's parameters alone (no demuxing):
    no B-frames, or a container that stores presentation times, or H.264 (ordered by its slice headers)."""
    return not _order_from_bitstream(container, stream) or stream.codec_context.name == "h264"


def packet_table(container: Any, stream: Any) -> PacketTable | None:
    """Demux ``stream`` of an opened PyAV ``container`` once (no decoding). None when nothing gives the
    display order: a non-empty packet without pts, two packets sharing one, or a stream that reorders
    frames (B-frames) in a container that stores no presentation times, unless it is H.264, whose slice
    headers give the order (`h264_order`). AVI is such a container: FFmpeg makes its timestamps up, in decode
    order for the real NTU RGB+D videos (H.264 with B-frames: ordered by their slice headers) and shuffled
    for packed MPEG-4 B-frames (the UCF101 fixture: no plan, frames are numbered by counting). Without
    B-frames, decode order is display order in any container."""
    if not plannable(container, stream):
        return None
    from_bitstream = _order_from_bitstream(container, stream)
    pts: list[int] = []
    key: list[bool] = []
    complete = True

    def payloads() -> Iterator[bytes]:  # one pass: the table's columns fill as the bitstream is read
        nonlocal complete
        for packet in container.demux(stream):
            if packet.size <= 0:
                continue
            if packet.pts is None:
                complete = False
                return
            pts.append(int(packet.pts))
            key.append(bool(packet.is_keyframe))
            yield bytes(packet) if from_bitstream else b""

    if from_bitstream:
        order = display_keys(payloads(), stream.codec_context.extradata)
    else:
        for _ in payloads():
            pass
        order = np.asarray(pts, np.int64)
    if not complete or order is None or len(order) != len(pts):
        return None
    table = PacketTable(np.asarray(pts, np.int64), np.asarray(key, bool), order)
    if len(np.unique(table.pts)) != table.frames:
        return None
    return table


def needed_packets(table: PacketTable, targets: np.ndarray) -> np.ndarray:
    """(P,) bool over decode positions: the packets that decoding display indices ``targets`` needs (from
    each target's last usable keyframe to its own packet; see the module docstring)."""
    order = table.display_order()
    need = np.zeros(table.frames, bool)
    key_pos = np.flatnonzero(table.key)
    for t in np.unique(targets):
        p = int(order[int(t)])
        usable = key_pos[(key_pos <= p) & (table.order[key_pos] <= table.order[p])]
        start = int(usable[-1]) if usable.size else 0
        need[start : p + 1] = True
    return need


def decode_planned(
    container: Any,
    stream: Any,
    table: PacketTable,
    want: np.ndarray,
    convert: Callable[[Any], np.ndarray],
    stats: DecodeStats | None = None,
) -> dict[int, np.ndarray] | None:
    """``{display index: convert(frame)}`` for the unique indices of ``want`` (all < ``table.frames``),
    decoding only the packets they need from a freshly opened ``container``. None when a decoded frame's pts is
    not a packet's or a requested frame never came out (the caller then decodes sequentially)."""
    stats = stats if stats is not None else DecodeStats()
    targets = {int(i) for i in np.unique(want)}
    order = table.display_order()
    rank = {int(table.pts[p]): i for i, p in enumerate(order)}
    target_pts = {int(table.pts[order[t]]) for t in targets}
    need = needed_packets(table, np.asarray(sorted(targets)))
    last = int(np.flatnonzero(need)[-1])
    stats.span = last + 1
    ctx = stream.codec_context
    out: dict[int, np.ndarray] = {}
    valid = True
    previous = -1

    def take(frames: Any) -> None:
        # A decoder outputs frames in display order: indices that do not increase mean the timestamps lie.
        nonlocal valid, previous
        for frame in frames:
            stats.output += 1
            idx = rank.get(frame.pts) if frame.pts is not None else None
            if idx is None or idx <= previous:
                valid = False
                continue
            previous = idx
            if idx in targets and idx not in out:
                out[idx] = convert(frame)

    pos, active = -1, False
    for packet in container.demux(stream):
        if packet.size <= 0:
            continue
        pos += 1
        if pos > last or len(out) == len(targets) or not valid:
            break
        if not need[pos]:
            if active:  # drain the delayed frames of the range just finished, then reset before the jump
                take(ctx.decode(None))
                ctx.flush_buffers()
                active = False
            continue
        ctx.skip_frame = "DEFAULT" if packet.pts in target_pts else "NONREF"
        stats.sent += 1
        take(ctx.decode(packet))
        active = True
    if active and len(out) < len(targets) and valid:
        take(ctx.decode(None))
    if not valid or len(out) < len(targets):
        return None
    return out
