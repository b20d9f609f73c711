"""What a Kinect v2 would report for a synthetic performer: the NTU skeleton, and the true camera mapping.

The skeleton is built as the Kinect SDK reports it (REF §4): joint positions in the depth camera's space
(metres) with frame-to-frame jitter, ``depthX/Y`` their projection into the nominal 512x424 depth frame and
``colorX/Y`` into the nominal 1920x1080 colour frame through the colour camera (the SDK's coordinate mapper
does the same), tracking state 2 for tracked joints and 1 (inferred) for occluded ones, joint orientations as
quaternions of the segment frames (zero for leaf joints, as in the NTU files).
"""

from __future__ import annotations

import numpy as np

from ..skeleton import BODY_INFO_FIELDS, NUM_JOINTS, Skeleton
from .body import LEAF_JOINTS, BodyPose, Performer
from .camera import DEPTH_TO_COLOR_T, KINECT_COLOR, KINECT_DEPTH, Intrinsics, Rig
from .geometry import quat_from_matrix

__all__ = ["make_skeleton", "fit_true_alignment", "project_joints"]

# Kinect v2 FrameEdges bits used by clippedEdges.
_EDGE_RIGHT, _EDGE_LEFT, _EDGE_TOP, _EDGE_BOTTOM = 1, 2, 4, 8
_HAND_JOINTS = (7, 11, 21, 22, 23, 24)


def project_joints(xyz_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth-camera points ``(..., 3)`` -> (nominal depth pixels ``(..., 2)``, nominal colour pixels)."""
    return KINECT_DEPTH.project(xyz_depth), KINECT_COLOR.project(xyz_depth + DEPTH_TO_COLOR_T)


def fit_true_alignment(points_depth: np.ndarray) -> dict[str, float]:
    """Least-squares 2D similarity ``colour ~ scale * depth + (tx, ty)`` in nominal pixels.

    Fitted on the true projections of the body's points ``(N, 3)`` (depth-camera metres) through both
    cameras, so it is the best map of this form at the subject's depth (the form the supplement §2 alignment
    estimates from skeleton joints). Also returns the RMS residual in colour pixels.
    """
    d, c = project_joints(points_depth.reshape(-1, 3))
    dm, cm = d.mean(0), c.mean(0)
    dd, cc = d - dm, c - cm
    scale = float(np.sum(dd * cc) / np.sum(dd * dd))
    t = cm - scale * dm
    res = c - (scale * d + t)
    return {
        "scale": scale,
        "tx": float(t[0]),
        "ty": float(t[1]),
        "residual_px": float(np.sqrt(np.mean(np.sum(res * res, -1)))),
        "n_points": int(d.shape[0]),
        "subject_depth_m": float(np.median(points_depth[..., 2])),
    }


def _occluded(xyz: np.ndarray, zbuf: np.ndarray, K: Intrinsics, margin: float = 0.15) -> np.ndarray:
    """(F, J) True where the rendered depth in front of a joint is more than ``margin`` metres nearer."""
    F, H, W = zbuf.shape
    px = K.project(xyz)
    ui = np.clip(np.rint(px[..., 0]).astype(int), 0, W - 1)
    vi = np.clip(np.rint(px[..., 1]).astype(int), 0, H - 1)
    front = zbuf[np.arange(F)[:, None], vi, ui]
    return np.isfinite(front) & (front < xyz[..., 2] - margin)


def _body_info(xyz: np.ndarray, depth_xy: np.ndarray, tracking: np.ndarray) -> np.ndarray:
    """(F, 9) per-frame body-line fields (see ``skeleton.BODY_INFO_FIELDS``)."""
    F = xyz.shape[0]
    info = np.zeros((F, len(BODY_INFO_FIELDS)), np.float32)
    x, y = depth_xy[..., 0], depth_xy[..., 1]
    edges = (
        _EDGE_RIGHT * (x > KINECT_DEPTH.width - 1).any(1)
        | _EDGE_LEFT * (x < 0).any(1)
        | _EDGE_TOP * (y < 0).any(1)
        | _EDGE_BOTTOM * (y > KINECT_DEPTH.height - 1).any(1)
    )
    info[:, 0] = edges
    for col, hand in ((1, 7), (3, 11)):  # hand confidence 1 and state 1 (unknown) unless the hand is hidden
        seen = tracking[:, hand] == 2
        info[:, col] = seen
        info[:, col + 1] = seen
    spine = xyz[:, 20] - xyz[:, 0]
    n = np.linalg.norm(spine, axis=-1) + 1e-9
    info[:, 6] = np.clip(2.0 * spine[:, 0] / n, -1, 1)  # leanX: sideways
    info[:, 7] = np.clip(-2.0 * spine[:, 2] / n, -1, 1)  # leanY: towards the sensor is positive
    info[:, 8] = 2
    return info


def _noise_body(rng: np.random.Generator, F: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A short-lived spurious body (Kinect mistakes furniture for people): (present (F,), xyz, tracking)."""
    length = max(3, int(F * rng.uniform(0.15, 0.4)))
    start = int(rng.integers(0, max(1, F - length)))
    present = np.zeros(F, bool)
    present[start : start + length] = True
    base = np.array([rng.uniform(-1.6, 1.6), rng.uniform(-0.6, 0.3), rng.uniform(3.2, 4.3)])
    shape = rng.normal(0, 0.18, (NUM_JOINTS, 3)) * np.array([1.0, 1.6, 0.5])
    xyz = base + shape + rng.normal(0, 0.03, (F, NUM_JOINTS, 3))
    tracking = rng.choice(np.array([0, 1, 2], np.int8), size=(F, NUM_JOINTS), p=[0.1, 0.7, 0.2])
    return present, xyz, tracking


def make_skeleton(
    pose_world: BodyPose,
    world_rot: np.ndarray,
    rig: Rig,
    depth_zbuf: np.ndarray,
    depth_K: Intrinsics,
    perf: Performer,
    rng: np.random.Generator,
    *,
    missing: bool = False,
    noise_body: bool = False,
) -> Skeleton:
    """The NTU skeleton of one sample.

    ``pose_world`` joints are in world metres and ``world_rot`` (3, 3) rotates the pose's segment frames from
    the ground frame into the world; ``depth_zbuf`` (F, h, w) is the rendered depth (metres, inf = empty) at
    ``depth_K``'s size, used to mark occluded joints. ``missing=True`` writes frames with 0 bodies (as the
    302 NTU samples with missing skeletons); ``noise_body=True`` adds a short-lived spurious body.
    """
    F = pose_world.joints.shape[0]
    if missing:
        return Skeleton.empty(F)
    xyz_true = rig.world_to_depth(pose_world.joints)
    occl = _occluded(xyz_true, depth_zbuf, depth_K)
    tracking = np.full((F, NUM_JOINTS), 2, np.int8)
    tracking[occl] = 1
    hands = np.zeros(NUM_JOINTS, bool)
    hands[list(_HAND_JOINTS)] = True
    tracking[(rng.random((F, NUM_JOINTS)) < 0.04) & hands[None]] = 1  # hand tips and thumbs often inferred
    tracking[rng.random((F, NUM_JOINTS)) < 0.002] = 0
    sigma = np.where(hands, 0.012, 0.005)[None, :, None] * np.where(tracking < 2, 3.0, 1.0)[..., None]
    xyz = xyz_true + rng.standard_normal(xyz_true.shape) * sigma
    depth_xy, color_xy = project_joints(xyz)
    rots = rig.rotation[None, None] @ world_rot[None, None] @ pose_world.frames
    orient = quat_from_matrix(rots)
    orient[:, list(LEAF_JOINTS)] = 0.0
    info = _body_info(xyz, depth_xy, tracking)

    bodies = [(perf.body_id, np.ones(F, bool), xyz, depth_xy, color_xy, tracking, orient, info)]
    if noise_body:
        present, nxyz, ntrk = _noise_body(rng, F)
        nd, nc = project_joints(nxyz)
        ninfo = np.zeros_like(info)
        ninfo[:, 8] = 2
        bodies.append((perf.body_id + 4099, present, nxyz, nd, nc, ntrk, np.zeros_like(orient), ninfo))
    nb = len(bodies)
    sk = Skeleton(
        joints_xyz=np.full((F, nb, NUM_JOINTS, 3), np.nan, np.float32),
        depth_xy=np.full((F, nb, NUM_JOINTS, 2), np.nan, np.float32),
        color_xy=np.full((F, nb, NUM_JOINTS, 2), np.nan, np.float32),
        tracking=np.full((F, nb, NUM_JOINTS), -1, np.int8),
        body_ids=np.array([b[0] for b in bodies], np.int64),
        bodies_per_frame=np.zeros(F, np.int64),
        orientation=np.full((F, nb, NUM_JOINTS, 4), np.nan, np.float32),
        body_info=np.full((F, nb, len(BODY_INFO_FIELDS)), np.nan, np.float32),
    )
    for b, (_, present, bx, bd, bc, bt, bo, bi) in enumerate(bodies):
        sk.joints_xyz[present, b] = bx[present]
        sk.depth_xy[present, b] = bd[present]
        sk.color_xy[present, b] = bc[present]
        sk.tracking[present, b] = bt[present]
        sk.orientation[present, b] = bo[present]
        sk.body_info[present, b] = bi[present]
        sk.bodies_per_frame += present
    return sk
