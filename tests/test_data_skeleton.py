"""The .skeleton reader/writer and main-actor selection."""

from __future__ import annotations

import numpy as np
import pytest

from modistill.data import Skeleton, SkeletonFormatError, read_skeleton, select_actors, write_skeleton
from modistill.data.skeleton import actor_scores

FIRST_JOINT_A001 = [0.2181153, 0.1725972, 3.785547, 277.419, 191.8218, 1036.233, 519.1677]


def test_fixture_a001_values(ntu_fixtures):
    sk = read_skeleton(ntu_fixtures / "S001C001P001R001A001.skeleton")
    assert sk.num_frames == 103 and sk.num_bodies == 1
    assert sk.joints_xyz.shape == (103, 1, 25, 3) and sk.joints_xyz.dtype == np.float32
    assert sk.depth_xy.shape == sk.color_xy.shape == (103, 1, 25, 2)
    assert sk.tracking.shape == (103, 1, 25) and sk.tracking.dtype == np.int8
    assert sk.body_ids.tolist() == [72057594037931101]  # exact: beyond float64 precision
    assert (sk.bodies_per_frame == 1).all()
    got = np.concatenate([sk.joints_xyz[0, 0, 0], sk.depth_xy[0, 0, 0], sk.color_xy[0, 0, 0]])
    np.testing.assert_allclose(got, FIRST_JOINT_A001, rtol=1e-6)
    # joint 6 (left elbow) of frame 1 is "inferred" (1) in the file; joint 1 tracked (2)
    assert sk.tracking[0, 0, 5] == 1 and sk.tracking[0, 0, 0] == 2
    np.testing.assert_allclose(
        sk.orientation[0, 0, 0], [-0.2059419, 0.05349901, 0.9692109, -0.1239193], rtol=1e-6
    )
    # body line: "72057594037931101 0 1 1 1 1 0 0.02764709 0.05745083 2"
    np.testing.assert_allclose(sk.body_info[0, 0], [0, 1, 1, 1, 1, 0, 0.02764709, 0.05745083, 2], rtol=1e-6)


@pytest.mark.parametrize("name,frames", [("S001C001P001R001A011", 82), ("S002C001P003R001A003", 100)])
def test_fixture_crlf_files(ntu_fixtures, name, frames):
    path = ntu_fixtures / f"{name}.skeleton"
    assert b"\r\n" in path.read_bytes()[:100]
    sk = read_skeleton(path)
    assert sk.num_frames == frames and sk.num_bodies == 1 and np.isfinite(sk.joints_xyz).all()


def test_fixture_two_bodies_every_frame(ntu_fixtures):
    sk = read_skeleton(ntu_fixtures / "S001C003P008R002A058.skeleton")
    assert sk.num_bodies == 2
    assert (sk.bodies_per_frame == 2).all() and sk.present.all()
    assert sorted(select_actors(sk, 2).tolist()) == [0, 1]


def _synthetic(n_frames=20, seed=0) -> Skeleton:
    """Two people, a static wide body ("table") and a short-lived jittery body; frame 7 has no bodies.

    Bodies are numbered in order of first appearance, as the reader numbers them."""
    rng = np.random.default_rng(seed)
    F, Bd = n_frames, 4
    sk = Skeleton.empty(F)
    xyz = np.full((F, Bd, 25, 3), np.nan, np.float32)
    base = np.stack([rng.uniform(-0.2, 0.2, 25), np.linspace(-0.8, 0.8, 25), np.full(25, 3.0)], -1)
    t = np.arange(F)[:, None, None]
    xyz[:, 0] = base + 0.05 * np.sin(t / 2.0) * np.array([1, 0, 0])  # actor 1: moves most
    xyz[:, 1] = base + [0.8, 0, 0.2] + 0.02 * np.cos(t / 3.0) * np.array([0, 1, 0])  # actor 2
    xyz[3:6, 3] = base[None] + rng.normal(0, 0.3, (3, 25, 3))  # noise: 3 frames, jittery
    wide = np.stack([np.linspace(-1.0, 1.0, 25), rng.uniform(0, 0.1, 25), np.full(25, 2.5)], -1)
    xyz[:, 2] = wide  # static and wider than tall
    xyz[7] = np.nan  # a frame with no bodies
    present = np.isfinite(xyz[..., 0, 0])
    sk.joints_xyz = xyz
    sk.depth_xy = np.where(present[..., None, None], 250 + 100 * xyz[..., :2], np.nan).astype(np.float32)
    sk.color_xy = np.where(present[..., None, None], 960 + 290 * xyz[..., :2], np.nan).astype(np.float32)
    sk.orientation = (np.where(present[..., None, None], 0.5, np.nan) * np.ones((1, 1, 25, 4))).astype(
        np.float32
    )
    sk.tracking = np.where(present[..., None], 2, -1).astype(np.int8) * np.ones((1, 1, 25), np.int8)
    sk.body_info = np.where(present[..., None], 1.0, np.nan).astype(np.float32) * np.ones(
        (1, 1, 9), np.float32
    )
    sk.body_ids = np.array([72057594037931101, 72057594037931102, 7, 8], np.int64)
    sk.bodies_per_frame = present.sum(1).astype(np.int64)
    return sk


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_write_read_round_trip(tmp_path, newline):
    sk = _synthetic()
    p = tmp_path / "S001C001P001R001A050.skeleton"
    write_skeleton(p, sk, newline=newline)
    back = read_skeleton(p)
    assert back.path == p
    np.testing.assert_array_equal(back.body_ids, sk.body_ids)
    np.testing.assert_array_equal(back.bodies_per_frame, sk.bodies_per_frame)
    assert back.bodies_per_frame[7] == 0 and not back.present[7].any()
    np.testing.assert_array_equal(back.tracking, sk.tracking)
    for k in ("joints_xyz", "depth_xy", "color_xy", "orientation", "body_info"):
        np.testing.assert_allclose(getattr(back, k), getattr(sk, k), rtol=1e-6, atol=1e-6, equal_nan=True)


def test_fixture_write_round_trip_is_byte_identical_for_lf(ntu_fixtures, tmp_path):
    src = ntu_fixtures / "S001C001P001R001A001.skeleton"
    write_skeleton(tmp_path / "a.skeleton", read_skeleton(src))
    assert (tmp_path / "a.skeleton").read_bytes() == src.read_bytes()


def test_zero_body_file_and_empty_frames(tmp_path):
    p = tmp_path / "z.skeleton"
    p.write_text("3\n0\n0\n0\n")
    sk = read_skeleton(p)
    assert sk.num_frames == 3 and sk.num_bodies == 0 and sk.joints_xyz.shape == (3, 0, 25, 3)
    assert select_actors(sk, 2).shape == (0,)


def test_select_actors_ignores_noise_bodies():
    sk = _synthetic()
    assert select_actors(sk, 1).tolist() == [0]
    assert select_actors(sk, 2).tolist() == [0, 1]
    # ranking: the implausible (short-lived / wide) bodies come last, whatever their motion
    s = actor_scores(sk)
    assert s[2] < s[1] and s[3] < s[1]
    assert select_actors(sk, 4).tolist()[:2] == [0, 1]
    with pytest.raises(ValueError):
        select_actors(sk, 0)


def _lines(tmp_path, text: str):
    p = tmp_path / "S001C001P001R001A001.skeleton"
    p.write_text(text)
    return p


def _good_text(frames=2) -> list[str]:
    lines = [str(frames)]
    for _ in range(frames):
        lines += ["1", "72057594037931101 0 1 1 1 1 0 0.1 0.2 2", "25"]
        lines += ["0.1 0.2 3.0 250 200 960 540 0 0 0 0 2"] * 25
    return lines


def test_errors_name_file_and_line(tmp_path):
    lines = _good_text()
    # truncated in the joints of frame 2 (line 1 + 28 lines of frame 1 + 3 header lines + 10 joints)
    p = _lines(tmp_path, "\n".join(lines[:42]) + "\n")
    with pytest.raises(SkeletonFormatError, match=r"S001C001P001R001A001\.skeleton:43: file is truncated"):
        read_skeleton(p)
    bad = list(lines)
    bad[10] = "0.1 0.2 abc 250 200 960 540 0 0 0 0 2"
    with pytest.raises(SkeletonFormatError, match=r"\.skeleton:11: expected a number, got b'abc'"):
        read_skeleton(_lines(tmp_path, "\n".join(bad)))
    bad = list(lines)
    bad[3] = "24"
    with pytest.raises(SkeletonFormatError, match=r"\.skeleton:4: expected 25 joints, got 24"):
        read_skeleton(_lines(tmp_path, "\n".join(bad)))
    with pytest.raises(SkeletonFormatError, match=r"\.skeleton:1: expected an integer frame count"):
        read_skeleton(_lines(tmp_path, "x\n"))
    with pytest.raises(SkeletonFormatError, match=r"\.skeleton:58: unexpected data after the 2 frames"):
        read_skeleton(_lines(tmp_path, "\n".join(lines + ["1"])))
    # a body count larger than the bodies present -> truncation error, not silent loss
    bad = list(lines)
    bad[29] = "2"
    with pytest.raises(SkeletonFormatError, match="truncated"):
        read_skeleton(_lines(tmp_path, "\n".join(bad)))
    with pytest.raises(FileNotFoundError):
        read_skeleton(tmp_path / "absent.skeleton")
