"""Kinect v2-like camera rigs: a colour camera and a depth camera a few centimetres apart, three views.

Facts used (public Kinect v2 specifications and calibrations): colour 1920x1080 with about 84 x 54 degrees
field of view, depth 512x424 with about 70 x 60 degrees, the two cameras about 5 cm apart. With the focal
lengths below the colour/depth pixel ratio is 1065 / 365 = 2.92, inside the 2.85-2.93 range fitted on real NTU
skeletons (fixtures README), and the offsets land in the fixtures' range too (colorX ~ 2.92 depthX + 210..250,
colorY ~ 2.92 depthY - 58). NTU's three cameras look at the performer from -45, 0 and +45 degrees (REF §4,
Shahroudy et al. 2016); setups differ in camera height and distance.

Projection (camera space as Kinect: x with the image column, y up, z forward, metres):
``u = cx + fx * x / z``, ``v = cy - fy * y / z``. Intrinsics are nominal (full-size frames); a rendered image
of size (W, H) uses them scaled by W / 1920 (or W / 512), so a nominal coordinate ``u`` lands on the decoded
pixel coordinate ``u * W / 1920`` (the rescaling NTU readers apply); pixel centres are at integer coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import normalize, rng_for

__all__ = [
    "Intrinsics",
    "KINECT_COLOR",
    "KINECT_DEPTH",
    "DEPTH_TO_COLOR_T",
    "CAMERA_AZIMUTH_DEG",
    "Setup",
    "Rig",
    "make_setup",
    "make_rig",
]


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of a ``width x height`` frame."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled(self, size: tuple[int, int]) -> Intrinsics:
        """The same camera rendered at ``size = (W, H)`` (pixel coordinates scale with the frame)."""
        sx, sy = size[0] / self.width, size[1] / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(size[0]), int(size[1]))

    def project(self, pts: np.ndarray) -> np.ndarray:
        """Camera-space points ``(..., 3)`` -> pixel coordinates ``(..., 2)`` (Kinect convention, y up)."""
        z = pts[..., 2]
        return np.stack([self.cx + self.fx * pts[..., 0] / z, self.cy - self.fy * pts[..., 1] / z], -1)

    def fov_deg(self) -> tuple[float, float]:
        return (
            float(np.degrees(2 * np.arctan(self.width / 2 / self.fx))),
            float(np.degrees(2 * np.arctan(self.height / 2 / self.fy))),
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "width": self.width,
            "height": self.height,
        }


KINECT_COLOR = Intrinsics(1065.0, 1065.0, 960.0, 540.0, 1920, 1080)  # 84.1 x 53.8 degrees
KINECT_DEPTH = Intrinsics(365.0, 365.0, 257.0, 205.0, 512, 424)  # 70.1 x 60.3 degrees
# Colour-camera coordinates = depth-camera coordinates + this translation (parallel optical axes, 5.2 cm).
DEPTH_TO_COLOR_T = np.array([0.052, 0.0, 0.0])
# NTU-like views: C001 in front of the performer, C002 45 degrees to the performer's right, C003 to the left.
CAMERA_AZIMUTH_DEG = {1: 0.0, 2: 45.0, 3: -45.0}


@dataclass(frozen=True)
class Setup:
    """One recording setup: camera distance/height, lighting and the room the cameras look into.

    ``light_dir`` is the unit direction towards the key light (world), ``ambient``/``diffuse`` its weights,
    ``tint`` an RGB white-balance factor; ``room`` holds the room's dimensions (metres).
    """

    setup: int
    distance: float
    height: float
    aim_height: float
    light_dir: tuple[float, float, float]
    ambient: float
    diffuse: float
    tint: tuple[float, float, float]
    room: dict[str, float]


def make_setup(seed: int, setup: int) -> Setup:
    """Setup ``setup`` of dataset ``seed``: distance 2.6-3.4 m, camera height 0.75-1.35 m, a lit room."""
    rng = rng_for(seed, "setup", setup)
    az, el = rng.uniform(-np.pi, np.pi), np.deg2rad(rng.uniform(30, 70))
    light = (float(np.cos(el) * np.sin(az)), float(np.sin(el)), float(-np.cos(el) * abs(np.cos(az))))
    return Setup(
        setup=int(setup),
        distance=float(rng.uniform(2.6, 3.4)),
        height=float(rng.uniform(0.75, 1.35)),
        aim_height=float(rng.uniform(0.85, 1.05)),
        light_dir=light,
        ambient=float(rng.uniform(0.35, 0.55)),
        diffuse=float(rng.uniform(0.5, 0.75)),
        tint=tuple(float(x) for x in rng.uniform(0.9, 1.1, 3)),
        room={
            "back": float(rng.uniform(1.6, 2.8)),
            "side": float(rng.uniform(3.0, 4.2)),
            "ceiling": float(rng.uniform(2.6, 3.2)),
            "front": 4.6,
        },
    )


@dataclass(frozen=True)
class Rig:
    """One camera position of a setup. ``rotation`` (3, 3) and ``position`` (3,) map world points into the
    depth camera (``p_depth = rotation @ (p - position)``); the colour camera is ``DEPTH_TO_COLOR_T`` away."""

    camera: int
    azimuth_deg: float
    position: np.ndarray
    rotation: np.ndarray

    def world_to_depth(self, pts: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` -> depth-camera (= skeleton) coordinates ``(..., 3)``."""
        return (pts - self.position) @ self.rotation.T

    def world_to_color(self, pts: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` -> colour-camera coordinates ``(..., 3)``."""
        return self.world_to_depth(pts) + DEPTH_TO_COLOR_T

    def color_center(self) -> np.ndarray:
        """World position of the colour camera's centre."""
        return self.position - self.rotation.T @ DEPTH_TO_COLOR_T

    def to_dict(self) -> dict:
        return {
            "camera": self.camera,
            "azimuth_deg": self.azimuth_deg,
            "position": self.position.tolist(),
            "rotation": self.rotation.tolist(),
        }


def make_rig(seed: int, setup: Setup, camera: int) -> Rig:
    """The Kinect of ``camera`` (1-3) in ``setup``, aimed at the performer's nominal position."""
    if camera not in CAMERA_AZIMUTH_DEG:
        raise ValueError(f"camera must be one of {sorted(CAMERA_AZIMUTH_DEG)}, got {camera}")
    rng = rng_for(seed, "rig", setup.setup, camera)
    az = np.deg2rad(CAMERA_AZIMUTH_DEG[camera] + rng.uniform(-3, 3))
    dist = setup.distance + rng.uniform(-0.1, 0.1)
    pos = np.array([dist * np.sin(az), setup.height + rng.uniform(-0.05, 0.05), -dist * np.cos(az)])
    aim = np.array([rng.uniform(-0.1, 0.1), setup.aim_height, 0.0])
    f = normalize(aim - pos)
    r = normalize(np.cross([0.0, 1.0, 0.0], f))
    u = np.cross(f, r)
    roll = np.deg2rad(rng.uniform(-1.5, 1.5))  # tripods are never exactly level
    c, s = np.cos(roll), np.sin(roll)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.stack([r, u, f])
    return Rig(camera=int(camera), azimuth_deg=float(np.degrees(az)), position=pos, rotation=rot)
