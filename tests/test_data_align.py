"""Skeleton-based RGB-depth alignment, the fallback table, the aligned crop and frame-count reconciling."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from modistill.data import (
    Alignment,
    AlignmentError,
    FallbackTable,
    Skeleton,
    aligned_crop_geometry,
    crop_aligned,
    fit_alignment,
    fit_or_fallback,
    read_skeleton,
    reconcile_frame_counts,
    select_actors,
)

FIXTURES = [
    "S001C001P001R001A001",
    "S001C001P001R001A011",
    "S002C001P003R001A003",
    "S001C003P008R002A058",
]


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_fit_scale_and_reprojection(ntu_fixtures, name):
    sk = read_skeleton(ntu_fixtures / f"{name}.skeleton")
    a = fit_alignment(sk)
    assert a.method == "skeleton" and a.n_pairs > 1000
    assert 2.85 <= a.scale <= 2.93  # fixtures README: least-squares slopes 2.85-2.93
    assert 200 <= a.tx <= 260 and -75 <= a.ty <= -25  # README: b 219-247, d -34..-69 (ours: same data)
    main = int(select_actors(sk, 1)[0])
    for b in range(sk.num_bodies):  # every body, every frame, not just the frames used for the fit
        ok = sk.tracking[:, b] == 2
        err = np.linalg.norm(a.depth_to_color(sk.depth_xy[:, b][ok]) - sk.color_xy[:, b][ok], axis=-1)
        if b == main:
            assert np.median(err) < 2.0 and err.max() < 4.5, (b, np.median(err), err.max())
        else:  # the second person stands at another distance: parallax shifts the offset a little
            assert np.median(err) < 3.0 and err.max() < 5.0, (b, np.median(err), err.max())
    assert a.residual_px < 2.0


def _skeleton_from_depth(depth_xy: np.ndarray, color_xy: np.ndarray, tracking: np.ndarray) -> Skeleton:
    """(F, 25, 2) depth/colour joints of one body -> Skeleton."""
    F = depth_xy.shape[0]
    sk = Skeleton.empty(F)
    sk.depth_xy = depth_xy[:, None].astype(np.float32)
    sk.color_xy = color_xy[:, None].astype(np.float32)
    sk.joints_xyz = np.zeros((F, 1, 25, 3), np.float32)
    sk.joints_xyz[..., 1] = np.linspace(0, 1, 25)  # upright, so the body is a plausible actor
    sk.tracking = tracking[:, None].astype(np.int8)
    sk.body_ids = np.array([1], np.int64)
    sk.bodies_per_frame = np.ones(F, np.int64)
    return sk


def test_fit_exact_math_mean_of_medians():
    # colour_x = 3 dx + 5, colour_y = 2 dy - 7 (anisotropic on purpose): scale = (3 + 2) / 2 = 2.5.
    rng = np.random.default_rng(0)
    d = rng.uniform(50, 450, (4, 25, 2))
    c = np.stack([3 * d[..., 0] + 5, 2 * d[..., 1] - 7], -1)
    tr = np.full((4, 25), 2)
    a = fit_alignment(_skeleton_from_depth(d, c, tr))
    assert (
        a.scale_x == pytest.approx(3.0) and a.scale_y == pytest.approx(2.0) and a.scale == pytest.approx(2.5)
    )
    # offset = median over joints of colour - 2.5 depth = median(0.5 dx + 5), median(-0.5 dy - 7)
    assert a.tx == pytest.approx(np.median(0.5 * d[..., 0] + 5))
    assert a.ty == pytest.approx(np.median(-0.5 * d[..., 1] - 7))
    assert a.n_pairs == 4 * 25 * 24 // 2


def test_fit_ignores_untracked_joints_and_tiny_denominators():
    rng = np.random.default_rng(1)
    d = rng.uniform(50, 450, (6, 25, 2))
    c = 2.9 * d + np.array([230.0, -50.0])
    tr = np.full((6, 25), 2)
    tr[:, :8] = 1  # inferred joints with garbage colour coordinates
    c[:, :8] += rng.uniform(-300, 300, (6, 8, 2))
    d[:, 8, 0] = d[:, 9, 0] + 0.01  # near-equal x: that pair's x ratio would be garbage
    c[:, 8, 0] = c[:, 9, 0] + 100
    a = fit_alignment(_skeleton_from_depth(d, c, tr))
    # exact up to the float32 storage of the coordinates
    assert a.scale == pytest.approx(2.9, abs=1e-6) and a.tx == pytest.approx(230.0, abs=1e-3)
    assert a.ty == pytest.approx(-50.0, abs=1e-3) and a.residual_px < 1e-3
    assert a.n_pairs == 6 * 17 * 16 // 2


def test_fit_errors_without_usable_joints():
    with pytest.raises(AlignmentError, match="no bodies"):
        fit_alignment(Skeleton.empty(5))
    d = np.random.default_rng(0).uniform(0, 400, (2, 25, 2))
    with pytest.raises(AlignmentError, match="no well-tracked joint pairs"):
        fit_alignment(_skeleton_from_depth(d, 2 * d, np.ones((2, 25))))


def test_fallback_table_per_key_then_global():
    t = FallbackTable()
    with pytest.raises(AlignmentError, match="no skeleton-fitted"):
        t.get("S001C001P001R001A001")
    t.add("S001C001P001R001A001", Alignment(2.8, 200.0, -30.0))
    t.add("S001C001P002R001A001", Alignment(2.9, 240.0, -40.0))
    t.add("S001C001P003R001A001", Alignment(3.0, 250.0, -60.0))
    t.add("S002C003P003R001A001", Alignment(2.0, 100.0, 0.0))
    t.add("S002C003P003R001A002", Alignment(9.0, 9.0, 9.0, method="fallback"))  # ignored
    assert len(t) == 4
    a = t.get("S001C001P009R002A060")
    assert (a.scale, a.tx, a.ty, a.method) == (pytest.approx(2.9), 240.0, -40.0, "fallback")
    assert "S001C001" in a.note and math.isnan(a.residual_px)
    g = t.get("S005C002P001R001A001")  # unseen key -> global median of the 4 fits
    assert (g.scale, g.tx, g.ty) == (pytest.approx(2.85), 220.0, -35.0)
    t2 = FallbackTable.from_dict(t.to_dict())
    assert t2.get("S001C001P009R002A060") == a
    sk_none = fit_or_fallback(None, "S002C003P001R001A001", t)
    assert sk_none.method == "fallback" and sk_none.scale == 2.0
    assert fit_or_fallback(Skeleton.empty(3), "S002C003P001R001A001", t).scale == 2.0
    assert Alignment.from_dict(a.to_dict()) == a


def test_crop_geometry_exact_nominal_sizes():
    a = Alignment(scale=2.9, tx=230.0, ty=-50.0)
    g = aligned_crop_geometry((1080, 1920), (424, 512), a)
    # continuous: u_c = 2.9 u_d + (230 + 0.5 - 1.45); x: [229.05, 1713.85] -> [230, 1713];
    # y: [-50.95, 1178.65] clipped to [0, 1080]
    assert g.rgb_box == (230, 0, 1713, 1080)
    assert g.ax == pytest.approx(2.9) and g.bx == pytest.approx(229.05) and g.by == pytest.approx(-50.95)
    sq = aligned_crop_geometry((1080, 1920), (424, 512), a, keep_aspect=True)
    assert sq.rgb_box == (230 + (1483 - 1080) // 2, 0, 230 + (1483 - 1080) // 2 + 1080, 1080)
    with pytest.raises(AlignmentError, match="does not overlap"):
        aligned_crop_geometry((1080, 1920), (424, 512), Alignment(2.9, 5000.0, 0.0))


def _marker_centre(img: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(img)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize(
    "rgb_hw,depth_hw,keep_aspect,S",
    # S close to the crop's width in RGB pixels, so 1 output pixel ~ 1 RGB pixel: the test stays sharp
    [
        ((270, 480), (212, 256), False, 320),
        ((1080, 1920), (424, 512), False, 1024),
        ((270, 480), (212, 256), True, 256),
    ],
)
def test_crop_aligned_puts_depth_and_colour_markers_on_the_same_pixel(rgb_hw, depth_hw, keep_aspect, S):
    a = Alignment(scale=2.9, tx=232.0, ty=-47.0)
    joints_depth = [(250.0, 200.0), (150.0, 120.0), (330.0, 300.0)]
    for jd in joints_depth:
        jc = a.depth_to_color(np.array(jd))
        rgb = np.zeros((1, *rgb_hw, 3), np.uint8)
        depth = np.zeros((1, *depth_hw), np.uint16)
        # nominal index coordinates -> decoded index coordinates (continuous u = x + 0.5 scales)
        dx = (jd[0] + 0.5) * depth_hw[1] / 512 - 0.5
        dy = (jd[1] + 0.5) * depth_hw[0] / 424 - 0.5
        cx = (jc[0] + 0.5) * rgb_hw[1] / 1920 - 0.5
        cy = (jc[1] + 0.5) * rgb_hw[0] / 1080 - 0.5
        r_d = max(2, depth_hw[1] // 40)
        cv2.circle(depth[0], (round(dx), round(dy)), r_d, 3000, -1)
        r_c = max(2, round(r_d * rgb_hw[1] / 1920 * 2.9 * 512 / depth_hw[1]))
        cv2.circle(rgb[0], (round(cx), round(cy)), r_c, (255, 255, 255), -1)
        out_rgb, out_depth = crop_aligned(rgb, depth, a, S, keep_aspect=keep_aspect)
        assert out_rgb.shape == (1, S, S, 3) and out_depth.shape == (1, S, S) and out_depth.dtype == np.uint16
        assert set(np.unique(out_depth).tolist()) <= {0, 3000}  # nearest: no invented depths
        pr, pd = _marker_centre(out_rgb[0, ..., 0] > 60), _marker_centre(out_depth[0] > 0)
        assert np.abs(pr - pd).max() <= 1.5, (jd, pr, pd)


def test_crop_aligned_jet_encoded_depth_and_bad_shapes():
    a = Alignment(2.9, 232.0, -47.0)
    rgb = np.zeros((2, 54, 96, 3), np.uint8)
    depth = np.full((2, 42, 51, 3), 7, np.uint8)
    r, d = crop_aligned(rgb, depth, a, 16)
    assert r.shape == (2, 16, 16, 3) and d.shape == (2, 16, 16, 3) and (d == 7).all()
    with pytest.raises(ValueError, match="depth must be"):
        crop_aligned(rgb, depth[:1], a, 16)


def test_reconcile_frame_counts():
    assert reconcile_frame_counts({"rgb": 103, "depth": 103, "skeleton": 103}) == (103, None)
    n, msg = reconcile_frame_counts({"rgb": 103, "depth": 101, "skeleton": 103})
    assert n == 101 and "rgb=103" in msg and "depth=101" in msg and "first 101" in msg
    with pytest.raises(ValueError):
        reconcile_frame_counts({})
