"""Display order of H.264 pictures from their slice headers, for containers that store no presentation times.

AVI keeps frames in decode order and no presentation times, so for H.264 with B-frames (every real NTU RGB+D
RGB video) FFmpeg's timestamps restate the decode order and cannot say where a frame is shown. The bitstream
does: each picture carries its picture order count (POC), and pictures are shown in increasing POC between
IDR pictures (ITU-T H.264 §8.2.1). This module reads just enough of each packet to compute it: the sequence
parameter set (SPS) fields the slice header depends on, and of the first slice of each picture
``nal_ref_idc``, ``frame_num``, ``idr_pic_id`` and ``pic_order_cnt_lsb``. Only what the common encoders produce
is handled (progressive frames, POC type 0 or 2, Annex B byte stream); anything else returns None and the
caller decodes sequentially. `decode_plan` uses the result to number frames and checks it against the
decoder's output order.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from modistill.core.errors import ModistillError

__all__ = ["display_keys"]

_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


class _Unsupported(ModistillError):
    """The stream uses a feature this reader does not follow (the caller falls back to sequential decoding)."""


class _Bits:
    """Big-endian bit reader over an RBSP (emulation-prevention bytes removed) with Exp-Golomb codes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise _Unsupported("header runs past the NAL unit")
            v = (v << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise _Unsupported("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    """The NAL payload after its 1-byte header, without emulation-prevention bytes (00 00 03 -> 00 00)."""
    return nal[1:].replace(b"\x00\x00\x03", b"\x00\x00")


def _nal_units(data: bytes) -> Iterable[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    start = data.find(b"\x00\x00\x01")
    if start < 0:
        raise _Unsupported("not an Annex B byte stream")
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        yield data[begin:end].rstrip(b"\x00") if nxt >= 0 else data[begin:end]
        start = nxt


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + bits.se() + 256) % 256
        last = nxt if nxt != 0 else last


def _parse_sps(rbsp: bytes) -> dict[str, int]:
    b = _Bits(rbsp)
    profile = b.u(8)
    b.u(16)  # constraint flags, level_idc
    b.ue()  # seq_parameter_set_id
    separate_planes = 0
    if profile in _HIGH_PROFILES:
        chroma = b.ue()
        if chroma == 3:
            separate_planes = b.u(1)
        b.ue(), b.ue(), b.u(1)  # bit depths, qpprime_y_zero_transform_bypass_flag
        if b.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma == 3 else 8):
                if b.u(1):
                    _skip_scaling_list(b, 16 if i < 6 else 64)
    sps = {"separate_planes": separate_planes, "log2_frame_num": b.ue() + 4, "poc_type": b.ue()}
    if sps["poc_type"] == 0:
        sps["log2_poc_lsb"] = b.ue() + 4
    elif sps["poc_type"] != 2:
        raise _Unsupported("POC type 1")
    b.ue(), b.u(1), b.ue(), b.ue()  # max_num_ref_frames, gaps flag, width and height in macroblocks
    if not b.u(1):
        raise _Unsupported("interlaced (field or MBAFF) coding")
    return sps


def _slice_poc(nal: bytes, sps: dict[str, int], state: dict[str, int]) -> tuple[bool, int]:
    """(is IDR, POC) of the picture whose first slice is ``nal``; updates ``state`` (§8.2.1.1)."""
    idr = (nal[0] & 0x1F) == 5
    ref = (nal[0] >> 5) & 3
    b = _Bits(_rbsp(nal[:64]))
    b.ue(), b.ue(), b.ue()  # first_mb_in_slice, slice_type, pic_parameter_set_id
    if sps["separate_planes"]:
        b.u(2)
    frame_num = b.u(sps["log2_frame_num"])
    if idr:
        b.ue()  # idr_pic_id
        state.update(prev_msb=0, prev_lsb=0, frame_num_offset=0, prev_frame_num=0)
    if sps["poc_type"] == 2:  # display order = decode order (§8.2.1.3)
        if not idr and frame_num < state["prev_frame_num"]:
            state["frame_num_offset"] += 1 << sps["log2_frame_num"]
        state["prev_frame_num"] = frame_num
        abs_num = state["frame_num_offset"] + frame_num
        return idr, 0 if idr else 2 * abs_num - (0 if ref else 1)
    max_lsb = 1 << sps["log2_poc_lsb"]
    lsb = b.u(sps["log2_poc_lsb"])
    prev_msb, prev_lsb = state["prev_msb"], state["prev_lsb"]
    if lsb < prev_lsb and prev_lsb - lsb >= max_lsb // 2:
        msb = prev_msb + max_lsb
    elif lsb > prev_lsb and lsb - prev_lsb > max_lsb // 2:
        msb = prev_msb - max_lsb
    else:
        msb = prev_msb
    if ref:  # only reference pictures move the reference point (memory_management_control_operation 5
        state.update(prev_msb=msb, prev_lsb=lsb)  # is not followed: the output-order check catches it)
    return idr, msb + lsb


def display_keys(packets: Iterable[bytes], extradata: bytes | None = None) -> np.ndarray | None:
    """(P,) int64 keys, one per packet in decode order, whose order is the display order (IDR period, then
    POC); None when the stream is not one this reader follows (see the module docstring)."""
    sps: dict[str, int] | None = None
    state = {"prev_msb": 0, "prev_lsb": 0, "frame_num_offset": 0, "prev_frame_num": 0}
    keys: list[tuple[int, int]] = []
    period = -1
    try:
        if extradata:
            for nal in _nal_units(extradata):
                if nal and (nal[0] & 0x1F) == 7:
                    sps = _parse_sps(_rbsp(nal))
        for data in packets:
            poc = None
            for nal in _nal_units(data):
                kind = nal[0] & 0x1F if nal else 0
                if kind == 7:
                    sps = _parse_sps(_rbsp(nal))
                elif kind in (1, 5) and poc is None:
                    if sps is None:
                        raise _Unsupported("slice before any SPS")
                    idr, poc = _slice_poc(nal, sps, state)
                    if idr or period < 0:
                        period += 1
            if poc is None:
                raise _Unsupported("packet without a slice")
            keys.append((period, poc))
    except _Unsupported:
        return None
    if not keys:
        return None
    pocs = np.asarray(keys, np.int64)
    # (period, POC) -> one sortable integer: periods are ordered, POCs within one span far less than 2**40
    out = (pocs[:, 0] << 40) + (pocs[:, 1] + (1 << 39))
    return out if len(np.unique(out)) == len(out) else None
