"""Decoding only the packets requested frames need (modistill/data/decode_plan.py): bit-identical to
sequential decoding on the real fixture videos and on generated H.264 / FFV1 files, and actually skipping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modistill.data.decode_plan import DecodeStats, decode_planned, needed_packets, packet_table
from modistill.data.depth import write_depth_video
from modistill.data.video import _decode_sequential, read_gray16_frames, read_video_frames
from tests._own_data import real_or_skip

RGB = {"format": "rgb24"}


def _sequential(path: Path) -> np.ndarray:
    """Every frame, numbered by counting decoded frames (the reference)."""
    return _decode_sequential(path, None, lambda frame: frame.to_ndarray(**RGB))


def _index_sets(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        np.array([0]),
        np.array([n - 1]),
        np.linspace(0, n - 1, 5).round().astype(np.int64),  # the deployed model's evenly spaced frames
        np.array([n // 2, 3, 3, n // 2 + 1]),  # any order, repeats, a flow pair
        rng.integers(0, n, 16),
        np.arange(n),
    ]


def _table(path: Path):
    import av  # PyAV: the module under test needs it anyway

    with av.open(str(path)) as container:
        return packet_table(container, container.streams.video[0])


def _planned(path: Path, want: np.ndarray, stats: DecodeStats):
    import av

    table = _table(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return decode_planned(container, stream, table, want, lambda f: f.to_ndarray(**RGB), stats)


@pytest.mark.parametrize(
    "parts", [("video_kinetics", "arm_wrestling.mp4"), ("video_kinetics", "cleaning_pool.mp4")]
)
def test_real_mp4_frames_equal_sequential_decoding_and_skip_work(parts):
    path = real_or_skip(*parts)
    full = _sequential(path)
    for want in _index_sets(len(full)):
        np.testing.assert_array_equal(read_video_frames(path, want), full[want], err_msg=f"{path} {want}")
    stats = DecodeStats()
    want = np.linspace(0, len(full) - 1, 5).round().astype(np.int64)
    got = _planned(path, want, stats)
    assert sorted(got) == sorted(want.tolist())
    # H.264 with B-frames: non-reference pictures are skipped, so fewer frames come out than were sent
    assert stats.output < stats.sent <= stats.span <= len(full)


def test_ntu_avi_is_ordered_by_its_h264_slice_headers(ntu_fixtures):
    """AVI stores no presentation times: FFmpeg numbers the NTU video's packets in decode order, so the plan
    orders them by the pictures' POC (`h264_order`). Trusting the made-up timestamps returned wrong frames
    during development; this checks every frame and the skipping."""
    path = ntu_fixtures / "S001C001P001R001A001_rgb.avi"
    table = _table(path)
    assert table is not None and np.all(np.diff(table.pts) > 0)  # timestamps in decode order...
    assert not np.all(np.diff(table.order) > 0)  # ...the display order is not
    small = {"format": "rgb24", "width": 480, "height": 270}  # every frame, at 1/16 of the memory
    full = _decode_sequential(path, None, lambda frame: frame.to_ndarray(**small))
    for want in _index_sets(len(full)):
        got = read_video_frames(path, want, size=(480, 270))
        np.testing.assert_array_equal(got, full[want], err_msg=f"{want}")
    stats = DecodeStats()
    _planned(path, np.linspace(0, 102, 5).round().astype(np.int64), stats)
    assert stats.output < 0.7 * stats.sent  # non-reference B-pictures were skipped


def test_packed_mpeg4_b_frames_in_avi_are_decoded_by_counting():
    """The UCF101 clip (MPEG-4 part 2 with packed B-frames in AVI): FFmpeg's timestamps are shuffled and no
    bitstream order is read, so no plan is made and frames are counted."""
    ucf = real_or_skip("video_ucf101", "ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01.avi")
    assert _table(ucf) is None
    full = _sequential(ucf)
    for want in _index_sets(len(full)):
        np.testing.assert_array_equal(read_video_frames(ucf, want), full[want])


def _h264(path: Path, n: int = 48, keyint: int = 10, extra: str = "") -> np.ndarray:
    """An H.264 MP4 with B-frames (3, pyramid) and a keyframe every ``keyint`` frames; returns the frames."""
    import av

    rng = np.random.default_rng(1)
    frames = np.zeros((n, 32, 48, 3), np.uint8)
    for i in range(n):  # a block that moves (motion-compensated), over fixed noise
        frames[i] = rng.integers(0, 30, (32, 48, 3)) if i == 0 else frames[0]
        frames[i, 8:20, i % 36 : i % 36 + 12] = (200, 40 + 3 * (i % 60), 90)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.options = {
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=3:b-pyramid=normal{extra}"
        }
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return frames


def test_generated_h264_skips_whole_groups_of_pictures(tmp_path):
    import av

    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx264 encoder")
    path = tmp_path / "gop.mp4"
    _h264(path)
    full = _sequential(path)
    assert len(full) == 48
    for want in _index_sets(48) + [np.array([9, 10, 11, 29, 30, 47])]:  # both sides of keyframes
        np.testing.assert_array_equal(read_video_frames(path, want), full[want], err_msg=f"{want}")
    table = _table(path)
    assert table is not None and np.flatnonzero(table.key).tolist() == [0, 10, 20, 30, 40]
    # frame 45 needs only its own group (from keyframe 40); frames 5 and 45 need two groups, with a jump
    assert needed_packets(table, np.array([45])).sum() <= 10
    stats = DecodeStats()
    got = _planned(path, np.array([5, 45]), stats)
    np.testing.assert_array_equal(got[5], full[5])
    np.testing.assert_array_equal(got[45], full[45])
    assert stats.sent <= 20 < stats.span


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
@pytest.mark.parametrize("extra", ["", ":open-gop=1", ":b-pyramid=none:ref=1"])
def test_generated_h264_without_stored_times_or_with_open_gops_is_exact(tmp_path, suffix, extra):
    """H.264 in AVI (order from the slice headers) and in Matroska (stored times), closed and open groups of
    pictures (open: the B-pictures before a non-IDR keyframe reference the previous group)."""
    import av

    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx264 encoder")
    path = tmp_path / f"v{suffix}"
    _h264(path, n=60, keyint=12, extra=extra)
    full = _sequential(path)
    assert len(full) == 60 and _table(path) is not None
    assert _planned(path, np.array([5, 30, 59]), DecodeStats()) is not None  # the plan ran, no fallback
    for want in _index_sets(60) + [np.array([11, 12, 13, 23, 24, 59])]:
        np.testing.assert_array_equal(read_video_frames(path, want), full[want], err_msg=f"{want}")


def test_depth_video_decodes_only_the_groups_holding_requested_frames(tmp_path):
    depth = np.random.default_rng(2).integers(400, 4500, (30, 24, 32)).astype(np.uint16)
    path = write_depth_video(tmp_path / "d.mkv", depth)
    want = np.array([7, 3, 29, 7])
    np.testing.assert_array_equal(read_gray16_frames(path, want), depth[want])
    import av

    table = _table(path)
    with av.open(str(path)) as container:
        stats = DecodeStats()
        decode_planned(
            container,
            container.streams.video[0],
            table,
            want,
            lambda f: f.to_ndarray(format="gray16le"),
            stats,
        )
    # FFV1 carries its entropy-coder state from a keyframe to the next frames, so a frame needs the packets
    # from its keyframe on, and no others
    keys = np.flatnonzero(table.key)
    assert len(keys) > 1
    assert stats.sent == needed_packets(table, want).sum() < 30


def test_generated_mpeg4_avi_without_b_frames_uses_the_plan(tmp_path):
    """`write_video`'s MPEG-4 in AVI (the synthetic generator's format) has no B-frames: decode order is
    display order, so the plan applies (skipping the groups before the requested frames) and stays exact."""
    from modistill.data.video import write_video

    rng = np.random.default_rng(3)
    frames = np.repeat(rng.integers(0, 255, (1, 32, 48, 3), dtype=np.uint8), 40, axis=0)
    frames[:, :, :8] = np.arange(40, dtype=np.uint8)[:, None, None, None] * 6
    path = tmp_path / "v.avi"
    write_video(path, frames)
    full = _sequential(path)
    table = _table(path)
    assert table is not None and len(np.flatnonzero(table.key)) > 1
    for want in _index_sets(40):
        np.testing.assert_array_equal(read_video_frames(path, want), full[want])
    stats = DecodeStats()
    _planned(path, np.array([38]), stats)
    assert stats.sent < 39


def test_decode_plan_benchmark_runs_on_the_fixtures(tmp_path, capsys):
    import importlib.util

    real_or_skip("video_kinetics", "arm_wrestling.mp4")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "decode_plan.py"
    spec = importlib.util.spec_from_file_location("decode_plan_bench", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "d.json"
    assert mod.main(["--repeats", "1", "--out", str(out)]) == 0
    rows = {r["video"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["arm_wrestling.mp4"]["plan"] and rows["arm_wrestling.mp4"]["decoded"] < 280
    assert "| arm_wrestling.mp4 | h264 |" in capsys.readouterr().out
