"""Synthesize one sample in memory: RGB frames, masked depth, the NTU skeleton and the truth sidecar."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..ntu import parse_sample_name
from ..skeleton import Skeleton
from .actions import ACTIONS, make_track
from .body import BodyPose, Performer, make_performer, solve_pose
from .camera import DEPTH_TO_COLOR_T, KINECT_COLOR, KINECT_DEPTH, Rig, Setup, make_rig, make_setup
from .config import SynthConfig
from .geometry import normalize, rng_for, rot_y
from .kinect import fit_true_alignment, make_skeleton, project_joints
from .render import Fragments, body_spheres, depth_image, prop_spheres, render_room, shade_rgb, splat

__all__ = ["SampleData", "synthesize"]

_ACTIONS_BY_NAME = {a.name: a for a in ACTIONS}


@dataclass
class SampleData:
    """One generated sample: ``rgb`` (F, H, W, 3) uint8, ``depth`` (F, h, w) uint16 mm (0 = background),
    ``skeleton`` the NTU skeleton, ``truth`` the JSON-serialisable sidecar."""

    name: str
    rgb: np.ndarray
    depth: np.ndarray
    skeleton: Skeleton
    truth: dict


@lru_cache(maxsize=64)
def _performer(seed: int, subject: int) -> Performer:
    return make_performer(seed, subject)


@lru_cache(maxsize=64)
def _setup(seed: int, setup: int) -> Setup:
    return make_setup(seed, setup)


@lru_cache(maxsize=64)
def _rig(seed: int, setup: int, camera: int) -> Rig:
    return make_rig(seed, _setup(seed, setup), camera)


@lru_cache(maxsize=16)
def _room(seed: int, setup: int, camera: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return render_room(seed, _setup(seed, setup), _rig(seed, setup, camera), KINECT_COLOR.scaled(size))


def _bboxes(frags: Fragments, sx: float, sy: float) -> list[list[float] | None]:
    """Per-frame body bounding boxes ``[x0, y0, x1, y1]`` in nominal pixels (None when nothing is seen)."""
    out: list[list[float] | None] = []
    for m in frags.mask:
        cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
        if cols.size == 0:
            out.append(None)
            continue
        box = np.array([cols[0] - 0.5, rows[0] - 0.5, cols[-1] + 0.5, rows[-1] + 0.5]) * [sx, sy, sx, sy]
        out.append(np.round(box, 2).tolist())
    return out


def _camera_truth(cfg: SynthConfig, rig: Rig) -> dict:
    """The truth sidecar's frame rate, image sizes and camera geometry (in the sidecar's key order)."""
    return {
        "fps": cfg.fps,
        "rgb_size": list(cfg.rgb_size),
        "depth_size": list(cfg.depth_size),
        "nominal_color_size": [KINECT_COLOR.width, KINECT_COLOR.height],
        "nominal_depth_size": [KINECT_DEPTH.width, KINECT_DEPTH.height],
        "color_intrinsics": KINECT_COLOR.to_dict(),
        "depth_intrinsics": KINECT_DEPTH.to_dict(),
        "depth_to_color": {"rotation": np.eye(3).tolist(), "translation": DEPTH_TO_COLOR_T.tolist()},
        "world_to_depth": {
            "rotation": rig.rotation.tolist(),
            "camera_position": rig.position.tolist(),
            "azimuth_deg": rig.azimuth_deg,
        },
    }


def synthesize(cfg: SynthConfig, name: str) -> SampleData:
    """Generate sample ``name`` of the dataset described by ``cfg``; a pure function of ``(cfg, name)``."""
    sn = parse_sample_name(name)
    if not 1 <= sn.action <= len(cfg.classes):
        raise ValueError(f"{name}: action {sn.action} outside 1..{len(cfg.classes)} of this dataset")
    action = _ACTIONS_BY_NAME[cfg.classes[sn.action - 1]]
    rng = rng_for(cfg.seed, "sample", name)
    perf = _performer(cfg.seed, sn.subject)
    setup = _setup(cfg.seed, sn.setup)
    rig = _rig(cfg.seed, sn.setup, sn.camera)
    n_frames = int(rng.integers(cfg.frames[0], cfg.frames[1] + 1))
    missing = bool(rng.random() < cfg.missing_skeleton_rate)
    noise_body = bool(rng.random() < cfg.noise_body_rate)

    pose = solve_pose(perf, make_track(action, perf, n_frames, rng))
    yaw0 = float(np.deg2rad(rng.uniform(-1, 1) * cfg.yaw_jitter_deg))
    pos0 = np.array([rng.uniform(-1, 1), 0.0, rng.uniform(-1, 1)]) * cfg.position_jitter_m
    world_rot = rot_y(yaw0)[0]
    pose_w = BodyPose(
        joints=pose.joints @ world_rot.T + pos0, extra=pose.extra @ world_rot.T + pos0, frames=pose.frames
    )
    spheres = body_spheres(perf, pose_w, cfg.seed)
    if action.prop is not None:
        spheres = spheres + prop_spheres(action.prop, pose_w, world_rot)

    Kc, Kd = KINECT_COLOR.scaled(cfg.rgb_size), KINECT_DEPTH.scaled(cfg.depth_size)
    frags_c = splat(rig.world_to_color(spheres.centres), spheres.radii, Kc)
    frags_d = splat(rig.world_to_depth(spheres.centres), spheres.radii, Kd)
    room, floor_xz = _room(cfg.seed, sn.setup, sn.camera, tuple(cfg.rgb_size))
    light_world = normalize(np.asarray(setup.light_dir) + rng.normal(0, 0.1, 3))
    feet_xz = 0.5 * (pose_w.joints[:, 14, [0, 2]] + pose_w.joints[:, 18, [0, 2]])
    rgb = shade_rgb(
        frags_c,
        spheres.albedo,
        room,
        floor_xz,
        feet_xz,
        rig.rotation @ light_world,
        setup,
        rng,
        gain=float(rng.uniform(0.8, 1.15)),
        noise_sigma=cfg.rgb_noise,
    )
    depth = depth_image(frags_d, rng)
    skeleton = make_skeleton(
        pose_w, world_rot, rig, frags_d.z, Kd, perf, rng, missing=missing, noise_body=noise_body
    )

    xyz = rig.world_to_depth(pose_w.joints)
    jd, jc = project_joints(xyz)
    truth = {
        "sample": name,
        "action": sn.action,
        "class_name": action.name,
        "setup": sn.setup,
        "camera": sn.camera,
        "subject": sn.subject,
        "replication": sn.replication,
        "num_frames": n_frames,
        **_camera_truth(cfg, rig),
        "alignment": fit_true_alignment(rig.world_to_depth(spheres.centres)),
        "skeleton": {"missing": missing, "noise_body": noise_body, "body_id": perf.body_id},
        "placement": {"yaw_deg": float(np.degrees(yaw0)), "x_m": float(pos0[0]), "z_m": float(pos0[2])},
        "performer": {
            "height_m": perf.height,
            "girth": perf.girth,
            "sleeves": perf.sleeves,
            "legwear": perf.legwear,
        },
        "joints_xyz": np.round(xyz, 5).tolist(),
        "joints_depth_px": np.round(jd, 3).tolist(),
        "joints_color_px": np.round(jc, 3).tolist(),
        "body_bbox_color_px": _bboxes(
            frags_c, KINECT_COLOR.width / Kc.width, KINECT_COLOR.height / Kc.height
        ),
        "body_bbox_depth_px": _bboxes(
            frags_d, KINECT_DEPTH.width / Kd.width, KINECT_DEPTH.height / Kd.height
        ),
        "generator": {"version": cfg.version, "seed": cfg.seed},
    }
    return SampleData(name=name, rgb=rgb, depth=depth, skeleton=skeleton, truth=truth)
