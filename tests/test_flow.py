"""modistill.data.flow: extraction accuracy, quantisation, flips, stacking/clamping, caching."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from modistill.data.cache import CacheError
from modistill.data.flow import (
    FLOW_BOUND,
    compute_flow,
    dequantize_flow,
    flip_flow,
    flow_for_sample,
    flow_pair_starts,
    flow_to_tensor,
    prepare_flow_sample,
    quantize_flow,
    read_flow,
    write_flow,
)


def _texture(side: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth random texture (blurred noise): trackable everywhere, no aperture problem."""
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.integers(0, 256, (side, side)).astype(np.float32), (0, 0), 1.5)
    return ((t - t.min()) / (t.max() - t.min()) * 255).astype(np.uint8)


def _moving_frames(shifts: list[tuple[int, int]], side: int = 64) -> np.ndarray:
    """(n, side, side, 3) RGB frames whose content moves by shifts[k] = (dx, dy) px from frame k to k+1."""
    canvas = _texture(side + 64)
    x, y = 32, 32
    frames = [canvas[y : y + side, x : x + side]]
    for dx, dy in shifts:
        # content moving right by dx means the window moves left by dx
        x, y = x - dx, y - dy
        frames.append(canvas[y : y + side, x : x + side])
    return np.repeat(np.stack(frames)[..., None], 3, axis=-1)


@pytest.mark.parametrize("method", ["tvl1", "dis", "farneback"])
def test_compute_flow_recovers_known_shift(method):
    frames = _moving_frames([(2, -1)])
    flow = compute_flow(frames, method)
    assert flow.shape == (1, 64, 64, 2) and flow.dtype == np.float32
    interior = flow[0, 8:-8, 8:-8]
    assert abs(np.median(interior[..., 0]) - 2.0) < 0.25
    assert abs(np.median(interior[..., 1]) + 1.0) < 0.25


def test_compute_flow_params_and_errors():
    frames = _moving_frames([(1, 0), (1, 0)], side=32)
    assert compute_flow(frames, "tvl1", warps=2, nscales=2, lam=0.15).shape == (2, 32, 32, 2)
    assert compute_flow(frames, "dis", preset="fast", patch_size=8).shape == (2, 32, 32, 2)
    assert compute_flow(frames[..., 0], "farneback", winsize=9).shape == (2, 32, 32, 2)  # grayscale input
    with pytest.raises(ValueError, match="unknown TV-L1 parameter"):
        compute_flow(frames, "tvl1", bogus=1)
    with pytest.raises(ValueError, match="unknown DIS preset"):
        compute_flow(frames, "dis", preset="slow")
    with pytest.raises(ValueError, match="unknown flow method"):
        compute_flow(frames, "raft")
    with pytest.raises(ValueError, match="at least 2 frames"):
        compute_flow(frames[:1])
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(frames.astype(np.float32))


def test_quantize_hand_values():
    f = np.array([-25.0, -20.0, -1.0, 0.0, 1.0, 20.0, 30.0], dtype=np.float32)
    # (f + 20) / 40 * 255: -1 -> 121.125, 0 -> 127.5 (tie, rounds to even 128), 1 -> 133.875
    assert quantize_flow(f).tolist() == [0, 0, 121, 128, 134, 255, 255]
    assert dequantize_flow(np.array([0, 255, 128], np.uint8)).tolist() == pytest.approx(
        [-20.0, 20.0, 20 / 255]
    )
    assert quantize_flow(np.array([5.0]), bound=10).tolist() == [191]  # 15/20*255 = 191.25


def test_quantize_round_trip_error_is_half_a_level():
    rng = np.random.default_rng(1)
    f = rng.uniform(-FLOW_BOUND, FLOW_BOUND, size=(4, 16, 16, 2)).astype(np.float32)
    err = np.abs(dequantize_flow(quantize_flow(f)) - f)
    assert err.max() <= FLOW_BOUND / 255 + 1e-5  # half of the 2*bound/255 step
    assert err.max() > 0.5 * FLOW_BOUND / 255  # and the bound is tight, i.e. we really quantise
    big = np.array([100.0, -100.0], np.float32)
    assert dequantize_flow(quantize_flow(big)).tolist() == [20.0, -20.0]
    with pytest.raises(ValueError, match="uint8"):
        dequantize_flow(f)


def test_flip_uint8_negates_x_exactly():
    rng = np.random.default_rng(2)
    q = rng.integers(0, 256, size=(3, 8, 8, 4), dtype=np.uint8)
    out = flip_flow(q)
    mirrored = q[:, :, ::-1]
    assert np.array_equal(out[..., 0::2], 255 - mirrored[..., 0::2])  # x channels (x1, x2)
    assert np.array_equal(out[..., 1::2], mirrored[..., 1::2])  # y channels untouched
    assert np.array_equal(flip_flow(out), q)  # involution
    # dequantised: x is negated exactly, y mirrored
    assert np.array_equal(dequantize_flow(out)[..., 0::2], -dequantize_flow(mirrored)[..., 0::2])


def test_flip_uint8_matches_quantized_negation_except_ties():
    rng = np.random.default_rng(3)
    f = rng.uniform(-25, 25, size=(2, 6, 6, 2)).astype(np.float32)
    assert np.array_equal(flip_flow(quantize_flow(f)), quantize_flow(flip_flow(f, quantized=False)))
    # the tie: zero flow quantises to 128; its flip is 127 while quantize(-0) is 128 (one level, documented)
    z = quantize_flow(np.zeros((1, 1, 1, 2), np.float32))
    assert z.ravel().tolist() == [128, 128]
    assert flip_flow(z).ravel().tolist() == [127, 128]


def test_flip_float_and_torch_channels_first():
    rng = np.random.default_rng(4)
    q = rng.integers(0, 256, size=(2, 5, 5, 6), dtype=np.uint8)
    a = flow_to_tensor(flip_flow(q))
    b = flip_flow(flow_to_tensor(q), quantized=False, channels_last=False)
    assert isinstance(b, torch.Tensor)
    assert torch.equal(a, b)  # bit-exact: both centre on 127.5 before scaling
    qt = flip_flow(torch.from_numpy(q))  # uint8 tensor, channels last
    assert np.array_equal(qt.numpy(), flip_flow(q))
    with pytest.raises(ValueError, match="uint8"):
        flip_flow(q.astype(np.float32))
    with pytest.raises(ValueError, match="even number"):
        flip_flow(q[..., :3])


def test_flip_matches_flow_of_mirrored_video():
    frames = _moving_frames([(2, 1)])
    flow = compute_flow(frames, "farneback")
    flow_mirror = compute_flow(np.ascontiguousarray(frames[:, :, ::-1]), "farneback")
    diff = np.abs(flip_flow(flow, quantized=False) - flow_mirror)[:, 8:-8, 8:-8]
    assert np.median(diff) < 0.05
    assert np.median(flow_mirror[0, 8:-8, 8:-8, 0]) == pytest.approx(-2.0, abs=0.25)


def test_flow_to_tensor_range_and_layout():
    q = np.zeros((2, 4, 4, 2), np.uint8)
    q[..., 0] = 255
    q[1, 0, 1, 1] = 128
    t = flow_to_tensor(q)
    assert t.shape == (2, 2, 4, 4) and t.dtype == torch.float32
    assert torch.all(t[:, 0] == 1.0) and t[0, 1, 0, 0] == -1.0
    assert t[1, 1, 0, 1].item() == pytest.approx(float(dequantize_flow(np.uint8(128))) / FLOW_BOUND, rel=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        flow_to_tensor(q.astype(np.float32))


def test_pair_starts_stack_and_clamp():
    s = flow_pair_starts([0, 4, 8, 9], num_frames=10, stack=3)
    assert s.tolist() == [[0, 1, 2], [4, 5, 6], [8, 8, 8], [8, 8, 8]]
    with pytest.raises(ValueError, match="out of range"):
        flow_pair_starts([10], num_frames=10)
    with pytest.raises(ValueError, match="at least 2 frames"):
        flow_pair_starts([0], num_frames=1)


def test_prepare_stacks_pairs_in_xy_order_and_clamps():
    shifts = [(1, 0), (0, 2), (-2, 0), (0, -1)]  # pair k displacement
    frames = _moving_frames(shifts, side=48)
    out = prepare_flow_sample(frames, [0, 2, 4], size=48, method="farneback", stack=2)
    assert out.shape == (3, 48, 48, 4) and out.dtype == np.uint8
    med = np.median(dequantize_flow(out)[:, 8:-8, 8:-8], axis=(1, 2))  # (3, 4): x1 y1 x2 y2
    expect = [[1, 0, 0, 2], [-2, 0, 0, -1], [0, -1, 0, -1]]  # step 4 = last frame: clamped to pair (3, 4)
    np.testing.assert_allclose(med, expect, atol=0.25)


def test_prepare_rescales_vectors_to_output_size():
    frames = _moving_frames([(4, 0)], side=64)
    out = prepare_flow_sample(frames, [0], size=32, method="farneback", compute_size=64)
    med = np.median(dequantize_flow(out)[0, 4:-4, 4:-4], axis=(0, 1))
    np.testing.assert_allclose(med, [2.0, 0.0], atol=0.25)  # 4 px at 64 -> 2 px at 32


def _write_video(path, frames: np.ndarray) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuvj444p"
        s.options = {"qscale": "2"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuvj444p")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_flow_for_sample_from_video_matches_frames_and_crop(tmp_path):
    import av

    frames = _moving_frames([(1, 0)] * 5, side=48)
    video = tmp_path / "clip.avi"
    _write_video(video, frames)
    with av.open(str(video)) as c:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert len(decoded) == 6

    def crop(x):  # same crop for every frame
        return x[:, 4:44, 8:48]

    got = flow_for_sample(video, [1, 5], crop, size=40, method="farneback", stack=2)
    ref = prepare_flow_sample(decoded, [1, 5], 40, "farneback", 2, crop_fn=crop)
    assert np.array_equal(got, ref)  # decoding stops early / end clamp give the same pairs
    assert np.median(dequantize_flow(got)[:, 6:-6, 6:-6, 0::2]) == pytest.approx(1.0, abs=0.25)
    with pytest.raises(ValueError, match="clip.avi.*out of range"):
        flow_for_sample(video, [6], None, size=16, method="farneback")
    with pytest.raises(FileNotFoundError, match="nope.avi"):
        flow_for_sample(tmp_path / "nope.avi", [0], None, size=16)
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="bad.avi"):
        flow_for_sample(bad, [0], None, size=16)


def test_cache_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(5)
    q = rng.integers(0, 256, size=(5, 8, 8, 4), dtype=np.uint8)
    p = write_flow(tmp_path, "S001C001P001R001A001", q)
    assert p == tmp_path / "flow" / "S001C001P001R001A001.npy"
    assert [x.name for x in p.parent.iterdir()] == [p.name]  # no temp file left behind
    assert np.array_equal(read_flow(tmp_path, "S001C001P001R001A001"), q)
    assert np.array_equal(read_flow(tmp_path, "S001C001P001R001A001", mmap=True), q)
    with pytest.raises(CacheError, match="x.npy.*uint8 flow"):
        write_flow(tmp_path, "x", q.astype(np.float32))
    with pytest.raises(CacheError, match="missing.npy"):
        read_flow(tmp_path, "missing")
    np.save(tmp_path / "flow" / "wrong.npy", q[..., :3])
    with pytest.raises(CacheError, match="wrong.npy"):
        read_flow(tmp_path, "wrong")
    (tmp_path / "flow" / "junk.npy").write_bytes(b"junk")
    with pytest.raises(CacheError, match="junk.npy"):
        read_flow(tmp_path, "junk")


def test_flow_for_sample_on_real_ntu_video(ntu_fixtures):
    from modistill.data.video import read_video_frames

    video = ntu_fixtures / "S001C001P001R001A001_rgb.avi"

    def crop(x):  # a centred 1080 x 1080 square of the 1920 x 1080 frames
        return x[:, :, 420:1500]

    got = flow_for_sample(video, [3, 8], crop, size=48, method="dis", stack=2)
    frames = read_video_frames(video, list(range(11)))  # H.264: the same decoder, all frames up to 10
    assert got.shape == (2, 48, 48, 4)
    assert np.array_equal(got, prepare_flow_sample(frames, [3, 8], 48, "dis", 2, crop_fn=crop))
