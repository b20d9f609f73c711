"""Pretext data for the stand-in for ImageNet initialisation: labelled still frames of people (docs/pretrain.md).

The paper initialises both streams from ImageNet (REF §1/§3). Nothing can be downloaded here, so the generator
renders what ImageNet gives a network in general, seeing, for free: still frames of *random* poses of
performers who never appear in the benchmark, in rooms the benchmark never uses, from any direction, each frame
labelled with its body-part map (16 classes: background and 15 left/right body parts) and its 2D joints.

What keeps the pretext apart from the benchmark (tested, docs/pretrain.md):
- no action: poses are drawn independently per frame from broad joint-angle ranges (``random_pose_track``);
  no class motion (``motions.py``) runs, and the frames carry no action label;
- no benchmark performer: pretext performers are subjects ``PRETEXT_SUBJECT0 + k``, outside the ids 1..999
  an NTU sample name can carry (``make_performer`` is a pure function of ``(seed, subject)``);
- no benchmark room: setups ``PRETEXT_SETUP0 + k``, with cameras at any azimuth, distance and height.

Both modalities come from one render (the colour and the depth camera of one Kinect-like rig), cropped exactly
as ``modistill prepare`` crops the benchmark (``crop_aligned`` with the true alignment, the same output size)
and the depth jet-encoded as the depth stream sees it (``encode_depth``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from modistill.core.errors import UsageError

from ..align import Alignment, aligned_crop_geometry, crop_aligned
from ..depth import encode_depth
from .body import CAPSULES, BodyPose, Performer, PoseTrack, lower_root_for_feet, make_performer, solve_pose
from .camera import KINECT_COLOR, KINECT_DEPTH, Rig, Setup, make_setup
from .geometry import normalize, rng_for
from .kinect import fit_true_alignment, project_joints
from .render import body_spheres, depth_image, render_room, shade_rgb, splat

__all__ = [
    "PART_NAMES",
    "PretextConfig",
    "PretextFrames",
    "PRETEXT_SUBJECT0",
    "PRETEXT_SETUP0",
    "random_pose_track",
    "render_group",
    "num_groups",
]

# Ids no NTU sample name can carry (SsssCcccPppp: at most 999), so no benchmark performer or room is drawn.
PRETEXT_SUBJECT0 = 100_000
PRETEXT_SETUP0 = 100_000

PART_NAMES: tuple[str, ...] = (
    "background", "head", "torso", "pelvis",
    "upper_arm_left", "forearm_left", "hand_left", "upper_arm_right", "forearm_right", "hand_right",
    "thigh_left", "shin_left", "foot_left", "thigh_right", "shin_right", "foot_right",
)  # fmt: skip
# The part of each capsule of body.CAPSULES (trunk columns, spine, chest and shoulders are one "torso").
_CAPSULE_PART = np.array([2, 2, 2, 2, 2, 3, 1, 1, 1, 4, 7, 5, 8, 6, 9, 6, 9, 10, 13, 11, 14, 12, 15], np.uint8)
assert len(_CAPSULE_PART) == len(CAPSULES)


@dataclass(frozen=True)
class PretextConfig:
    """Everything that determines the pretext frames (its hash names the cache, docs/pretrain.md).

    ``frames`` still frames in groups of ``poses_per_view`` (one performer, room and camera per group, a new
    random pose per frame); ``performers`` and ``rooms`` the sizes of the pools groups draw from; ``size`` the
    square crop side (the benchmark cache's); ``label_size`` the side of the part maps; ``rgb_size`` /
    ``depth_size`` / ``rgb_noise`` the render settings (the benchmark generator's defaults).
    """

    seed: int = 0
    frames: int = 6144
    poses_per_view: int = 8
    performers: int = 256
    rooms: int = 32
    size: int = 64
    label_size: int = 32
    rgb_size: tuple[int, int] = (320, 180)
    depth_size: tuple[int, int] = (128, 106)
    rgb_noise: float = 0.012
    version: str = "1"

    def __post_init__(self) -> None:
        small = {k: getattr(self, k) for k in ("frames", "poses_per_view", "performers", "rooms", "label_size")
                 if getattr(self, k) < 1}
        if small or self.size < 8:
            raise UsageError(f"pretext settings must be >= 1 (size >= 8), got {small or {'size': self.size}}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["rgb_size"], d["depth_size"] = list(self.rgb_size), list(self.depth_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PretextConfig:
        d = dict(d)
        for k in ("rgb_size", "depth_size"):
            d[k] = tuple(int(v) for v in d[k])
        return cls(**d)

    def key(self) -> str:
        """Content hash of the config (12 hex digits)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def num_groups(cfg: PretextConfig) -> int:
    return -(-cfg.frames // cfg.poses_per_view)


@dataclass
class PretextFrames:
    """``n`` labelled frames. ``rgb``/``depth`` (n, S, S, 3) uint8 (depth jet-encoded); ``rgb_parts`` /
    ``depth_parts`` (n, L, L) uint8 part index (``PART_NAMES``) in each modality's crop; ``rgb_joints`` /
    ``depth_joints`` (n, 25, 2) float32 joint positions in the crop, in [0, 1] (x, y)."""

    rgb: np.ndarray
    depth: np.ndarray
    rgb_parts: np.ndarray
    depth_parts: np.ndarray
    rgb_joints: np.ndarray
    depth_joints: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return dataclasses.asdict(self)


def random_pose_track(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    """``n`` independent random poses (one per frame, no motion, no action): trunk bends and turns, arms
    anywhere within reach, feet apart, stepping or lifted, knees bent, facing any direction."""
    L = perf.lengths
    reach = L["upper_arm"] + L["forearm"]
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, (n, *shape))  # noqa: E731
    deg = np.deg2rad
    root = np.zeros((n, 3))
    root[:, 1] = perf.stand_height - 0.012
    track = PoseTrack(
        root=root,
        yaw=u(-np.pi, np.pi),
        pelvis_pitch=deg(u(-10, 35)) * (rng.random(n) < 0.5),
        trunk_pitch=deg(u(-15, 30)),
        trunk_roll=deg(u(-18, 18)),
        trunk_twist=deg(u(-35, 35)),
        head_pitch=deg(u(-25, 35)),
        head_yaw=deg(u(-50, 50)),
    )
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        # Wrist targets relative to the shoulder (chest frame): a random direction, biased away from the body's
        # centre line, at 35-99 % of the arm's reach.
        d = normalize(rng.normal(0, 1, (n, 3)) + np.array([sgn * 0.4, -0.5, -0.3]))
        track.wrist[side] = d * reach * u(0.35, 0.99)[:, None]
        track.elbow_pole[side] = normalize(rng.normal(0, 0.5, (n, 3)) + np.array([sgn * 0.5, -0.3, 0.8]))
        track.wrist_flex[side] = deg(u(-30, 70))
        stance = L["hip_w"] * u(0.6, 2.6)
        ankle = np.stack([sgn * stance, np.full(n, L["ankle_h"]), u(-0.35, 0.35)], -1)
        lifted = rng.random(n) < 0.15  # a foot off the floor (a step or a kick)
        ankle[lifted, 1] += rng.uniform(0.05, 0.45, lifted.sum())
        ankle[lifted, 2] -= rng.uniform(0.0, 0.3, lifted.sum())
        track.ankle[side] = ankle
        track.knee_pole[side] = normalize(rng.normal(0, 0.3, (n, 3)) + np.array([sgn * 0.15, 0.0, -1.0]))
    # Crouch: the root drops and the feet stay put (IK bends the knees).
    track.root[:, 1] -= np.where(rng.random(n) < 0.3, u(0.0, 0.4), 0.0)
    lower_root_for_feet(track, perf)
    return track


@lru_cache(maxsize=64)
def _performer(seed: int, k: int) -> Performer:
    return make_performer(seed, PRETEXT_SUBJECT0 + k)


@lru_cache(maxsize=32)
def _setup(seed: int, k: int) -> Setup:
    return make_setup(seed, PRETEXT_SETUP0 + k)


def _random_rig(rng: np.random.Generator, setup: Setup) -> Rig:
    """A Kinect-like rig at any azimuth around the room's centre, 2.2-3.8 m away, 0.6-1.6 m high."""
    az = rng.uniform(-np.pi, np.pi)
    dist = rng.uniform(2.2, 3.8)
    pos = np.array([dist * np.sin(az), rng.uniform(0.6, 1.6), -dist * np.cos(az)])
    aim = np.array([rng.uniform(-0.25, 0.25), rng.uniform(0.7, 1.1), rng.uniform(-0.25, 0.25)])
    f = normalize(aim - pos)
    r = normalize(np.cross([0.0, 1.0, 0.0], f))
    up = np.cross(f, r)
    roll = np.deg2rad(rng.uniform(-3, 3))
    c, s = np.cos(roll), np.sin(roll)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.stack([r, up, f])
    return Rig(camera=0, azimuth_deg=float(np.degrees(az)), position=pos, rotation=rot)


def _crop_labels(labels: np.ndarray, box: tuple[int, int, int, int], side: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.stack([cv2.resize(f[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_NEAREST) for f in labels])


def render_group(cfg: PretextConfig, group: int) -> PretextFrames:
    """The frames of group ``group`` (a pure function of ``(cfg, group)``): up to ``poses_per_view`` frames."""
    rng = rng_for(cfg.seed, "pretext", group)
    n = min(cfg.poses_per_view, cfg.frames - group * cfg.poses_per_view)
    perf = _performer(cfg.seed, int(rng.integers(cfg.performers)))
    room = int(rng.integers(cfg.rooms))
    setup = _setup(cfg.seed, room)
    rig = _random_rig(rng, setup)
    pose = solve_pose(perf, random_pose_track(perf, n, rng))
    # The body stands near the room's centre, where the rig aims.
    pos = np.array([rng.uniform(-0.4, 0.4), 0.0, rng.uniform(-0.4, 0.4)])
    pose_w = BodyPose(joints=pose.joints + pos, extra=pose.extra + pos, frames=pose.frames)
    spheres = body_spheres(perf, pose_w, cfg.seed)
    Kc, Kd = KINECT_COLOR.scaled(cfg.rgb_size), KINECT_DEPTH.scaled(cfg.depth_size)
    frags_c = splat(rig.world_to_color(spheres.centres), spheres.radii, Kc)
    frags_d = splat(rig.world_to_depth(spheres.centres), spheres.radii, Kd)
    bg, floor_xz = render_room(cfg.seed, setup, rig, Kc)
    light = normalize(np.asarray(setup.light_dir) + rng.normal(0, 0.1, 3))
    feet_xz = 0.5 * (pose_w.joints[:, 14, [0, 2]] + pose_w.joints[:, 18, [0, 2]])
    rgb = shade_rgb(frags_c, spheres.albedo, bg, floor_xz, feet_xz, rig.rotation @ light, setup, rng,
                    gain=float(rng.uniform(0.8, 1.15)), noise_sigma=cfg.rgb_noise)
    depth = depth_image(frags_d, rng)
    part = np.concatenate([_CAPSULE_PART[spheres.capsule], np.zeros(1, np.uint8)])  # sphere index -1 (background) -> 0
    parts_c = part[frags_c.sphere].astype(np.uint8)
    parts_d = part[np.where(depth > 0, frags_d.sphere, -1)]  # dropped depth pixels are background too

    a = fit_true_alignment(rig.world_to_depth(spheres.centres))
    align = Alignment(a["scale"], a["tx"], a["ty"], method="truth")
    S = cfg.size
    stacked = np.stack([depth, parts_d.astype(np.uint16)], -1)
    rgb_c, dep_c = crop_aligned(rgb, stacked, align, S)
    g = aligned_crop_geometry(rgb.shape[1:3], depth.shape[1:3], align)
    rgb_parts = _crop_labels(parts_c, g.rgb_box, cfg.label_size)
    depth_parts = cv2.resize(
        dep_c[..., 1].astype(np.uint8).transpose(1, 2, 0), (cfg.label_size, cfg.label_size),
        interpolation=cv2.INTER_NEAREST,
    ).reshape(cfg.label_size, cfg.label_size, -1).transpose(2, 0, 1)
    jd, jc = project_joints(rig.world_to_depth(pose_w.joints))
    x0, y0, x1, y1 = g.rgb_box
    sx, sy = cfg.rgb_size[0] / KINECT_COLOR.width, cfg.rgb_size[1] / KINECT_COLOR.height
    rgb_j = np.stack([(jc[..., 0] * sx + 0.5 - x0) / (x1 - x0), (jc[..., 1] * sy + 0.5 - y0) / (y1 - y0)], -1)
    # The depth crop covers the same scene region as the RGB crop: map depth joints through the alignment.
    jdc = align.depth_to_color(jd)
    dep_j = np.stack([(jdc[..., 0] * sx + 0.5 - x0) / (x1 - x0), (jdc[..., 1] * sy + 0.5 - y0) / (y1 - y0)], -1)
    return PretextFrames(
        rgb=rgb_c,
        depth=encode_depth(dep_c[..., 0]),
        rgb_parts=rgb_parts,
        depth_parts=depth_parts,
        rgb_joints=rgb_j.astype(np.float32),
        depth_joints=dep_j.astype(np.float32),
    )
