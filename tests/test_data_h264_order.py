"""The H.264 display-order reader (modistill/data/h264_order.py) on hand-built bitstreams: Exp-Golomb codes,
POC type 0 with its wrap-around (ITU-T H.264 §8.2.1.1), IDR periods, and what it refuses."""

from __future__ import annotations

import numpy as np

from modistill.data.h264_order import _Bits, display_keys


def _ue(v: int) -> str:
    code = bin(v + 1)[2:]
    return "0" * (len(code) - 1) + code


def _nal(header: int, bits: str) -> bytes:
    bits += "1"  # rbsp stop bit
    bits += "0" * (-len(bits) % 8)
    return b"\x00\x00\x00\x01" + bytes([header]) + int(bits, 2).to_bytes(len(bits) // 8, "big")


# Baseline SPS (profile 66): log2_max_frame_num = 4, POC type 0, log2_max_poc_lsb = 4, progressive.
SPS = _nal(
    0x67, "01000010" + "0" * 16 + _ue(0) + _ue(0) + _ue(0) + _ue(0) + _ue(1) + "0" + _ue(1) + _ue(1) + "1"
)


def _slice(idr: bool, ref: bool, frame_num: int, lsb: int) -> bytes:
    header = (0x60 if ref else 0x00) | (5 if idr else 1)
    bits = _ue(0) + _ue(0) + _ue(0) + format(frame_num, "04b") + (_ue(0) if idr else "") + format(lsb, "04b")
    return _nal(header, bits)


def test_exp_golomb_codes():
    def bits(s: str) -> _Bits:
        s += "0" * (-len(s) % 8)
        return _Bits(int(s, 2).to_bytes(len(s) // 8, "big"))

    b = bits("1" + "010" + "011" + "00100" + "00101")
    assert [b.ue(), b.ue(), b.ue(), b.ue(), b.ue()] == [0, 1, 2, 3, 4]
    b = bits("010" + "011" + "00100")
    assert [b.se(), b.se(), b.se()] == [1, -1, 2]


def test_poc_type_0_wraps_and_idr_starts_a_new_period():
    # decode order: IDR (POC 0), then reference P pictures with lsb 4, 8, 12, 0 (wrapped: POC 16), 4 (20), and
    # non-reference B pictures shown between them (lsb 2 -> POC 2, lsb 14 -> 14, lsb 2 after the wrap -> 18)
    pictures = [
        (True, True, 0),
        (False, True, 4),
        (False, False, 2),
        (False, True, 8),
        (False, True, 12),
        (False, True, 0),
        (False, False, 14),
        (False, True, 4),
        (False, False, 2),
        (True, True, 0),
    ]
    packets = [SPS + _slice(idr, ref, i % 16, lsb) for i, (idr, ref, lsb) in enumerate(pictures)]
    keys = display_keys(packets)
    assert keys is not None
    # display order: POC 0, 2, 4, 8, 12, 14, 16, 18, 20, then the second IDR period
    assert np.argsort(keys).tolist() == [0, 2, 1, 3, 4, 6, 5, 8, 7, 9]


def test_refuses_what_it_does_not_follow():
    assert display_keys([b"\x00\x01\x02"]) is None  # not Annex B
    assert display_keys([_slice(True, True, 0, 0)]) is None  # a slice before any SPS
    interlaced = _nal(
        0x67, "01000010" + "0" * 16 + _ue(0) + _ue(0) + _ue(0) + _ue(0) + _ue(1) + "0" + _ue(1) + _ue(1) + "0"
    )
    assert display_keys([interlaced + _slice(True, True, 0, 0)]) is None
