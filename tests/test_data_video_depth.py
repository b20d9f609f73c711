"""RGB video decoding (PyAV) and masked-depth PNG I/O and encodings."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from modistill.data import (
    DepthReadError,
    VideoReadError,
    depth_frame_count,
    encode_depth,
    read_depth_frames,
    read_video_frames,
    video_frame_count,
    write_depth_frames,
    write_video,
)
from modistill.data.depth import _JET_RGB

RGB_FIXTURE = "S001C001P001R001A001_rgb.avi"


def test_fixture_video_count_and_frames(ntu_fixtures):
    path = ntu_fixtures / RGB_FIXTURE
    assert video_frame_count(path) == 103
    frames = read_video_frames(path, [2, 0, 2])
    assert frames.shape == (3, 1080, 1920, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], frames[2])
    assert not np.array_equal(frames[0], frames[1])  # the subject moves between frame 0 and 2
    assert frames.std() > 10  # a real picture, not a blank frame
    small = read_video_frames(path, [0], size=(480, 270))
    assert small.shape == (1, 270, 480, 3)
    # the down-scaled decode matches an INTER_AREA resize of the full frame up to codec-free rounding
    ref = cv2.resize(frames[1], (480, 270), interpolation=cv2.INTER_AREA)
    assert np.abs(small[0].astype(int) - ref.astype(int)).mean() < 6


def test_fixture_video_index_past_end(ntu_fixtures):
    path = ntu_fixtures / RGB_FIXTURE
    with pytest.raises(
        VideoReadError, match=r"_rgb\.avi: frame index 103 requested but the video has only 103"
    ):
        read_video_frames(path, [102, 103])


def _clip(n=6, h=32, w=48):
    # Flat colour blocks that change per frame survive lossy coding well enough to tell frames apart.
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, :, : (i + 1) * w // n] = (40 * i, 255 - 40 * i, 128)
    return frames


def test_written_video_round_trip(tmp_path):
    frames = _clip()
    path = tmp_path / "v.avi"
    write_video(path, frames)
    assert video_frame_count(path) == 6
    every = read_video_frames(path)
    assert every.shape == frames.shape
    assert np.abs(every.astype(int) - frames.astype(int)).mean() < 8
    picked = read_video_frames(path, np.array([5, 1]))
    np.testing.assert_array_equal(picked, every[[5, 1]])


def test_unreadable_and_missing_videos(tmp_path):
    bad = tmp_path / "broken_rgb.avi"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(VideoReadError, match="broken_rgb.avi"):
        read_video_frames(bad, [0])
    with pytest.raises(VideoReadError, match="broken_rgb.avi"):
        video_frame_count(bad)
    with pytest.raises(FileNotFoundError, match="absent.avi"):
        read_video_frames(tmp_path / "absent.avi", [0])


def _depth(n=3, h=12, w=10, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.integers(500, 4500, (n, h, w)).astype(np.uint16)
    d[:, :, :3] = 0  # masked background
    return d


def test_depth_png_round_trip(tmp_path):
    d = _depth()
    folder = tmp_path / "S001C001P001R001A001"
    paths = write_depth_frames(folder, d)
    assert [p.name for p in paths] == ["MDepth-00000001.png", "MDepth-00000002.png", "MDepth-00000003.png"]
    assert depth_frame_count(folder) == 3
    back = read_depth_frames(folder, [2, 0])
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, d[[2, 0]])


def test_depth_errors(tmp_path):
    folder = tmp_path / "S001C001P001R001A001"
    write_depth_frames(folder, _depth())
    with pytest.raises(
        DepthReadError, match=r"MDepth-00000004\.png: depth frame index 3 requested but .* has 3"
    ):
        read_depth_frames(folder, [3])
    cv2.imwrite(str(folder / "MDepth-00000002.png"), np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(
        DepthReadError, match=r"MDepth-00000002\.png: expected a 16-bit single-channel.*uint8 x 3"
    ):
        read_depth_frames(folder, [1])
    cv2.imwrite(str(folder / "MDepth-00000002.png"), np.zeros((12, 10), np.uint8))
    with pytest.raises(
        DepthReadError, match=r"MDepth-00000002\.png: expected a 16-bit single-channel.*uint8 x 1"
    ):
        read_depth_frames(folder, [1])
    (folder / "MDepth-00000002.png").unlink()
    with pytest.raises(DepthReadError, match=r"MDepth-00000002\.png is missing"):
        depth_frame_count(folder)
    with pytest.raises(DepthReadError, match="not found"):
        depth_frame_count(tmp_path / "nope")


def test_encode_raw_exact_values():
    d = np.array([[[0, 500, 2500, 4500, 6000, 100]]], np.uint16)
    out = encode_depth(d, mode="raw")
    assert out.shape == (1, 1, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0, :, 0], [0, 0, 128, 255, 255, 0])  # 2000/4000*255 = 127.5 -> 128
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    out2 = encode_depth(d, mode="raw", near_mm=1000, far_mm=2000)
    np.testing.assert_array_equal(out2[0, 0, :, 0], [0, 0, 255, 255, 255, 0])


def test_encode_jet_orientation_and_background():
    d = np.array([[0, 500, 2500, 4500]], np.uint16)
    out = encode_depth(d, mode="jet")
    assert out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])  # background stays black
    # OpenCV's jet in RGB order: low end dark blue, high end dark red; near = red end
    np.testing.assert_array_equal(_JET_RGB[0], [0, 0, 128])
    np.testing.assert_array_equal(_JET_RGB[255], [128, 0, 0])
    np.testing.assert_array_equal(out[0, 1], _JET_RGB[255])
    np.testing.assert_array_equal(out[0, 3], _JET_RGB[0])
    assert out[0, 1, 0] > out[0, 1, 2]  # near is red (RGB order, not OpenCV's BGR)
    # 2500 mm: v = 0.5, code = rint(255 * (1 - 0.5)) = rint(127.5) = 128 (round half to even)
    bgr = cv2.applyColorMap(np.array([[128]], np.uint8), cv2.COLORMAP_JET)[0, 0]
    np.testing.assert_array_equal(out[0, 2], bgr[::-1])
    # every foreground pixel is non-black, every background pixel black
    big = _depth(2, 16, 16)
    enc = encode_depth(big, "jet")
    assert (enc[big == 0] == 0).all() and (enc[big > 0].max(axis=-1) > 0).all()


def test_encode_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown mode"):
        encode_depth(np.zeros((1, 2, 2), np.uint16), mode="hsv")
    with pytest.raises(ValueError, match="far_mm"):
        encode_depth(np.zeros((1, 2, 2), np.uint16), near_mm=10, far_mm=10)
