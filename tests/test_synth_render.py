"""Unit tests of the synthetic generator's maths: rotations, cameras, IK, sphere splatting, action design."""

from __future__ import annotations

import numpy as np
import pytest

from modistill.data.synth.actions import ACTIONS, make_track, resolve_classes
from modistill.data.synth.body import PARENTS, make_performer, solve_pose
from modistill.data.synth.camera import (
    DEPTH_TO_COLOR_T,
    KINECT_COLOR,
    KINECT_DEPTH,
    Intrinsics,
    make_rig,
    make_setup,
)
from modistill.data.synth.geometry import quat_from_matrix, rng_for, rot_x, rot_y, rot_z
from modistill.data.synth.kinect import fit_true_alignment, project_joints
from modistill.data.synth.render import Fragments, depth_image, splat


def test_rotations_hand_values():
    np.testing.assert_allclose(rot_x(np.pi / 2)[0] @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(rot_y(np.pi / 2)[0] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(rot_z(np.pi / 2)[0] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    # 90 degrees about z: q = (cos 45, 0, 0, sin 45); 180 about x: (0, 1, 0, 0).
    np.testing.assert_allclose(
        quat_from_matrix(rot_z(np.pi / 2))[0], [np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-12
    )
    np.testing.assert_allclose(np.abs(quat_from_matrix(rot_x(np.pi))[0]), [0, 1, 0, 0], atol=1e-12)
    r = rot_x(0.3) @ rot_y(-1.1) @ rot_z(2.5)
    q = quat_from_matrix(r)[0]
    w, x, y, z = q
    back = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    np.testing.assert_allclose(back, r[0], atol=1e-12)


def test_rng_for_is_stable_and_key_sensitive():
    a = rng_for(0, "sample", "S001C001P001R001A001").random(3)
    np.testing.assert_array_equal(a, rng_for(0, "sample", "S001C001P001R001A001").random(3))
    assert not np.array_equal(a, rng_for(1, "sample", "S001C001P001R001A001").random(3))
    assert not np.array_equal(a, rng_for(0, "sample", "S001C001P001R001A002").random(3))


def test_kinect_intrinsics_and_projection_by_hand():
    # Fields of view of the Kinect v2 (colour ~84x54, depth ~70x60 degrees).
    fc, fd = KINECT_COLOR.fov_deg(), KINECT_DEPTH.fov_deg()
    assert abs(fc[0] - 84.1) < 0.5 and abs(fc[1] - 53.8) < 0.5
    assert abs(fd[0] - 70.1) < 0.5 and abs(fd[1] - 60.3) < 0.5
    d, c = project_joints(np.array([0.5, 0.25, 2.5]))
    np.testing.assert_allclose(d, [257 + 365 * 0.2, 205 - 365 * 0.1])
    np.testing.assert_allclose(c, [960 + 1065 * (0.5 + 0.052) / 2.5, 540 - 1065 * 0.1])
    # A frame rendered at W x H maps nominal pixel u to u * W / 1920 exactly.
    k = KINECT_COLOR.scaled((320, 180))
    p = np.array([[0.3, -0.2, 3.0], [-0.7, 0.5, 2.2]])
    np.testing.assert_allclose(k.project(p), KINECT_COLOR.project(p) * [320 / 1920, 180 / 1080])


def test_rigs_are_rigid_and_look_at_the_performer():
    setup = make_setup(0, 1)
    for cam in (1, 2, 3):
        rig = make_rig(0, setup, cam)
        np.testing.assert_allclose(rig.rotation @ rig.rotation.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rig.rotation) == pytest.approx(1.0)
        centre = rig.world_to_depth(np.array([0.0, 1.0, 0.0]))
        assert 2.3 < centre[2] < 3.8  # in front of the camera at the setup's distance
        uv = KINECT_DEPTH.project(centre)
        assert abs(uv[0] - 257) < 60 and abs(uv[1] - 205) < 60
        np.testing.assert_allclose(
            rig.world_to_color(np.zeros(3)) - rig.world_to_depth(np.zeros(3)), DEPTH_TO_COLOR_T
        )
    az = [make_rig(0, setup, c).azimuth_deg for c in (1, 2, 3)]
    assert abs(az[0]) < 4 and abs(az[1] - 45) < 4 and abs(az[2] + 45) < 4


def test_true_alignment_recovers_focal_ratio():
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(-0.4, 0.4, 500), rng.uniform(-0.9, 0.9, 500), rng.uniform(2.9, 3.1, 500)], -1)
    a = fit_true_alignment(pts)
    assert a["scale"] == pytest.approx(1065 / 365, abs=0.01)
    # colour - scale*depth at the subject's depth: 960 - s*257 + 1065*0.052/3 and 540 - s*205.
    assert a["tx"] == pytest.approx(960 - 1065 / 365 * 257 + 1065 * 0.052 / 3.0, abs=1.0)
    assert a["ty"] == pytest.approx(540 - 1065 / 365 * 205, abs=0.5)


def test_splat_single_sphere_exact_depths():
    K = Intrinsics(100.0, 100.0, 10.0, 10.0, 21, 21)
    r = 0.104  # footprint radius f*r/z = 5.2 px: no pixel centre lies exactly on the rim
    fr = splat(np.array([[[0.0, 0.0, 2.0]]]), np.array([r]), K)
    # z = Z - sqrt(r^2 - d^2) with d = offset_px * Z / f.
    assert fr.z[0, 10, 10] == pytest.approx(2.0 - r)
    assert fr.z[0, 10, 13] == pytest.approx(2.0 - np.sqrt(r * r - 0.06**2))
    assert fr.z[0, 14, 10] == pytest.approx(2.0 - np.sqrt(r * r - 0.08**2))
    assert fr.z[0, 10, 15] == pytest.approx(2.0 - np.sqrt(r * r - 0.1**2))
    assert not np.isfinite(fr.z[0, 10, 16]) and fr.sphere[0, 10, 16] == -1
    assert fr.mask[0].sum() == sum(1 for i in range(-6, 7) for j in range(-6, 7) if i * i + j * j < 5.2**2)
    np.testing.assert_allclose(fr.normal[0, 10, 10], [0, 0, -1], atol=1e-6)  # faces the camera
    np.testing.assert_allclose(fr.normal[0, 10, 13], [0.06 / r, 0, -np.sqrt(r * r - 0.0036) / r], atol=1e-6)


def test_splat_nearest_sphere_wins_and_offscreen_is_ignored():
    K = Intrinsics(100.0, 100.0, 10.0, 10.0, 21, 21)
    c = np.array([[[0.0, 0.0, 2.0], [0.0, 0.0, 1.5], [50.0, 0.0, 2.0], [0.0, 0.0, -1.0]]])
    fr = splat(c, np.array([0.1, 0.05, 0.1, 0.1]), K)
    assert fr.sphere[0, 10, 10] == 1 and fr.z[0, 10, 10] == pytest.approx(1.45)
    assert fr.sphere[0, 10, 6] == 0  # outside the small sphere's 3.3 px disc, inside the big one's
    assert set(np.unique(fr.sphere)) == {-1, 0, 1}


def test_depth_image_millimetres_and_background():
    z = np.full((2, 8, 8), np.inf, np.float32)
    z[:, 2:6, 2:6] = 2.5
    sph = np.where(np.isfinite(z), 0, -1).astype(np.int32)
    d = depth_image(
        Fragments(z=z, sphere=sph, normal=np.zeros(z.shape + (3,), np.float32)),
        np.random.default_rng(0),
        edge_dropout=0.0,
    )
    assert d.dtype == np.uint16
    assert (d[:, :2] == 0).all() and (d[:, 6:] == 0).all()
    fg = d[:, 2:6, 2:6]
    assert np.abs(fg[fg > 0].astype(int) - 2500).max() < 40  # sigma = 1.5 + 1.5 * 2.5^2 ~ 11 mm


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.name)
def test_actions_keep_bone_lengths_and_feet_on_the_floor(action):
    perf = make_performer(0, 2)
    pose = solve_pose(perf, make_track(action, perf, 40, rng_for(0, "t", action.name)))
    J = pose.joints
    assert np.isfinite(J).all()
    for j, p in enumerate(PARENTS):
        if j == 0:
            continue
        length = np.linalg.norm(J[:, j] - J[:, p], axis=-1)
        assert np.ptp(length) < 1e-6, f"bone {j}-{p} changes length in {action.name}"
    feet_y = J[:, [14, 18], 1]
    assert feet_y.min() > perf.lengths["ankle_h"] - 0.02  # never below the floor
    if action.name != "jumping_jack":
        assert (feet_y.min(axis=1) < perf.lengths["ankle_h"] + 0.02).all()  # one foot always down
    R = pose.frames
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)


def _peak(action_name: str, subject: int = 1) -> np.ndarray:
    perf = make_performer(0, subject)
    (action,) = resolve_classes([action_name])
    J = solve_pose(perf, make_track(action, perf, 60, rng_for(0, "peak", action_name))).joints
    return J[30]  # mid-sample: the envelope holds the pose there


def test_depth_pairs_differ_mainly_along_the_camera_axis():
    """The design claim of the class set: partner poses look alike from the front, differ in depth."""
    cases = [
        ("push_forward", "hands_to_chest", (7, 11)),
        ("point_forward", "hand_to_shoulder", (11,)),
        ("lean_forward", "lean_backward", (3,)),
        ("step_forward", "step_backward", (18,)),
    ]
    for a, b, joints in cases:
        pa, pb = _peak(a)[list(joints)], _peak(b)[list(joints)]
        dz = np.abs(pa[:, 2] - pb[:, 2]).mean()  # ground frame: -z faces camera C001
        dxy = np.linalg.norm(pa[:, :2] - pb[:, :2], axis=-1).mean()
        assert dz > 0.25 and dz > 1.5 * dxy, f"{a} vs {b}: depth {dz:.2f} m, image plane {dxy:.2f} m"


def test_resolve_classes():
    assert [a.name for a in resolve_classes(None)] == [a.name for a in ACTIONS]
    assert [a.name for a in resolve_classes(2)] == ["push_forward", "hands_to_chest"]
    assert [a.name for a in resolve_classes(["wave", 1, "3"])] == ["wave", "push_forward", "point_forward"]
    with pytest.raises(ValueError, match="unknown class"):
        resolve_classes(["moonwalk"])
    with pytest.raises(ValueError, match="duplicate"):
        resolve_classes(["wave", "wave"])


def _sample_as(class_name: str, name: str = "S001C001P002R001A001"):
    """The sample ``name`` of a one-class dataset of ``class_name``: the same name (so the same random draws:
    performer, motion, placement, noise) whatever the class."""
    from modistill.data.synth.config import make_config
    from modistill.data.synth.sample import synthesize

    cfg = make_config(preset="tiny", classes=[class_name], frames=[24, 24], rgb_size=(320, 180))
    return synthesize(cfg, name)


@pytest.mark.parametrize(
    ("a", "b"), [("hold_up_red_sign", "hold_up_yellow_sign"), ("lift_red_box", "lift_green_box")]
)
def test_appearance_pairs_differ_in_rgb_only(a, b):
    """The design claim of the appearance pairs: with the same draws, the two classes give the same depth
    and skeleton bit for bit, and RGB images that differ only where the held object is (and visibly there)."""
    sa, sb = _sample_as(a), _sample_as(b)
    np.testing.assert_array_equal(sa.depth, sb.depth)
    for field in ("joints_xyz", "color_xy", "tracking", "orientation"):
        np.testing.assert_array_equal(getattr(sa.skeleton, field), getattr(sb.skeleton, field))
    assert sa.truth["joints_xyz"] == sb.truth["joints_xyz"]
    diff = np.abs(sa.rgb.astype(int) - sb.rgb.astype(int)).max(axis=-1)  # (F, H, W)
    mid = diff[12]  # mid-sample: the envelope holds the pose there
    # Visible: at this size a body is about 90 px tall, the objects 30-40 cm, so a hundred pixels or more.
    assert (mid > 40).sum() >= 100, f"{a} vs {b}: the object is hardly visible ({(mid > 40).sum()} px)"
    # Only the object's pixels differ, and they sit at the right hand (the sign) or between the hands (box).
    hands = np.array(sa.skeleton.color_xy[12, 0, [7, 11]]) * 320 / 1920  # nominal 1920 -> 320 pixels wide
    ys, xs = np.nonzero(mid)
    assert mid.astype(bool).mean() < 0.03
    near = np.hypot(xs[:, None] - hands[None, :, 0], ys[:, None] - hands[None, :, 1]).min(axis=1)
    assert near.max() < 30  # 40 cm ~ 25 px here


def test_appearance_pair_props_are_drawn_from_the_pose_not_the_colour():
    from modistill.data.synth.actions import Prop
    from modistill.data.synth.render import PROP_CAPSULE, prop_spheres

    perf = make_performer(0, 2)
    (action,) = resolve_classes(["hold_up_red_sign"])
    pose = solve_pose(perf, make_track(action, perf, 10, rng_for(0, "prop")))
    red, blue = prop_spheres(Prop("sign", (1, 0, 0)), pose), prop_spheres(Prop("sign", (0, 0, 1)), pose)
    np.testing.assert_array_equal(red.centres, blue.centres)
    assert (red.capsule == PROP_CAPSULE).all() and (red.albedo == [1, 0, 0]).all()
    # The sign starts at the right hand and extends 2-40 cm along the fingers (wrist -> hand), 28 cm across.
    fingers = pose.joints[:, 11] - pose.joints[:, 10]
    fingers /= np.linalg.norm(fingers, axis=-1, keepdims=True)
    reach = np.einsum("fsi,fi->fs", red.centres - pose.joints[:, 11, None], fingers)
    np.testing.assert_allclose([reach.min(), reach.max()], [0.02, 0.4], atol=1e-6)
    # The box is centred between the hands, whatever the pose.
    (lift,) = resolve_classes(["lift_red_box"])
    pose = solve_pose(perf, make_track(lift, perf, 10, rng_for(0, "prop")))
    box = prop_spheres(lift.prop, pose)
    np.testing.assert_allclose(box.centres.mean(axis=1), 0.5 * (pose.joints[:, 7] + pose.joints[:, 11]), atol=1e-9)
    with pytest.raises(ValueError, match="unknown prop shape"):
        prop_spheres(Prop("hat", (1, 1, 1)), pose)


def test_demo_classes_balance_the_modalities():
    """The demo's 12 classes: 4 depth-pair, 4 appearance-pair, 4 image-plane; every pair closed in the set."""
    from modistill.data.synth.config import DEMO_CLASSES, PRESETS

    chosen = resolve_classes(DEMO_CLASSES)
    assert PRESETS["demo"]["classes"] == DEMO_CLASSES and len(chosen) == 12
    kinds = [a.kind for a in chosen]
    assert {k: kinds.count(k) for k in set(kinds)} == {"depth-pair": 4, "appearance-pair": 4, "image-plane": 4}
    names = {a.name for a in chosen}
    for a in chosen:
        assert (a.pair is None) == (a.kind == "image-plane")
        assert a.pair is None or a.pair in names
        if a.kind == "appearance-pair":
            (partner,) = resolve_classes([a.pair])
            assert partner.fn is a.fn and partner.prop.shape == a.prop.shape and partner.prop.color != a.prop.color
