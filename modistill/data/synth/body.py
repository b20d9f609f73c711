"""Articulated performers with the Kinect v2 25-joint skeleton: proportions, clothing and kinematics.

The skeleton's joint order and bone parents are NTU's (REF §4). Segment lengths are fractions of the body
height taken from standard anthropometric tables (Winter, "Biomechanics and Motor Control of Human Movement",
segment-length fractions of height), rounded; each performer scales them by per-limb factors.

A pose is a :class:`PoseTrack`: trunk angles and a root trajectory drive a forward-kinematics chain, while
the arms and legs are placed by analytic two-link inverse kinematics towards wrist / ankle targets with a pole
vector choosing where the elbow / knee points. Every function is vectorised over the ``F`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import normalize, rng_for, rot_x, rot_y, rot_z

__all__ = [
    "JOINT_NAMES",
    "PARENTS",
    "LEAF_JOINTS",
    "Performer",
    "PoseTrack",
    "make_performer",
    "trunk_frames",
    "solve_pose",
    "BodyPose",
    "lower_root_for_feet",
]

JOINT_NAMES: tuple[str, ...] = (
    "spine_base", "spine_mid", "neck", "head",
    "shoulder_left", "elbow_left", "wrist_left", "hand_left",
    "shoulder_right", "elbow_right", "wrist_right", "hand_right",
    "hip_left", "knee_left", "ankle_left", "foot_left",
    "hip_right", "knee_right", "ankle_right", "foot_right",
    "spine_shoulder", "hand_tip_left", "thumb_left", "hand_tip_right", "thumb_right",
)  # fmt: skip
# REF §4: parent of joint j (1-based) = [2 1 21 3 21 5 6 7 21 9 10 11 1 13 14 15 1 17 18 19 2 8 8 12 12].
PARENTS: tuple[int, ...] = tuple(
    p - 1 for p in (2, 1, 21, 3, 21, 5, 6, 7, 21, 9, 10, 11, 1, 13, 14, 15, 1, 17, 18, 19, 2, 8, 8, 12, 12)
)
# Joints without an own segment frame: Kinect writes a zero orientation for them (seen in the NTU files).
LEAF_JOINTS: tuple[int, ...] = (3, 15, 19, 21, 22, 23, 24)

# Segment lengths as fractions of height (Winter's tables, rounded; the torso split between Kinect's
# spine joints is our choice). Standing, the head centre lands at ~0.95 H and the shoulders at ~0.81 H.
_LENGTH_FRACTIONS = {
    "ankle_h": 0.039, "shin": 0.246, "thigh": 0.245, "hip_drop": 0.03, "hip_w": 0.052,
    "spine1": 0.135, "spine2": 0.15, "neck": 0.045, "head": 0.065,
    "shoulder_w": 0.105, "shoulder_drop": 0.015, "upper_arm": 0.175, "forearm": 0.15,
    "hand": 0.045, "hand_tip": 0.04, "foot_fwd": 0.075, "foot_drop": 0.025,
}  # fmt: skip

_SKIN = [(0.96, 0.80, 0.69), (0.90, 0.72, 0.56), (0.78, 0.57, 0.42), (0.55, 0.38, 0.26), (0.38, 0.26, 0.18)]
_HAIR = [(0.08, 0.06, 0.05), (0.30, 0.20, 0.12), (0.55, 0.42, 0.25), (0.75, 0.62, 0.40), (0.45, 0.45, 0.45)]
_SHIRT = [
    (0.80, 0.15, 0.15), (0.15, 0.35, 0.75), (0.20, 0.60, 0.30), (0.90, 0.85, 0.80), (0.15, 0.15, 0.18),
    (0.95, 0.70, 0.15), (0.55, 0.25, 0.60), (0.20, 0.65, 0.70), (0.85, 0.45, 0.55), (0.50, 0.50, 0.52),
]  # fmt: skip
_TROUSERS = [
    (0.15, 0.22, 0.42),
    (0.10, 0.10, 0.12),
    (0.60, 0.52, 0.38),
    (0.35, 0.35, 0.38),
    (0.32, 0.22, 0.15),
]
_SHOES = [(0.08, 0.08, 0.08), (0.92, 0.92, 0.92), (0.40, 0.25, 0.15), (0.70, 0.15, 0.15)]


@dataclass(frozen=True)
class Performer:
    """One synthetic subject: proportions, clothing, motion style, all derived from ``(seed, subject)``.

    ``lengths`` are segment lengths in metres (keys of the anthropometric table), ``radii`` capsule radii in
    metres, ``colors`` linear RGB in [0, 1] per clothing part, ``patterns`` per part ``(kind, period_m,
    contrast)`` with kind ``"solid" | "stripes" | "speckle"``, ``style`` motion-style factors.
    """

    subject: int
    height: float
    girth: float
    lengths: dict[str, float]
    radii: dict[str, float]
    colors: dict[str, tuple[float, float, float]]
    patterns: dict[str, tuple[str, float, float]]
    sleeves: str
    legwear: str
    style: dict[str, float]
    body_id: int

    @property
    def stand_height(self) -> float:
        """Spine-base height above the floor with straight legs (m)."""
        L = self.lengths
        return L["ankle_h"] + L["shin"] + L["thigh"] + L["hip_drop"]


def _pick(rng: np.random.Generator, palette: list, jitter: float = 0.06) -> tuple[float, float, float]:
    c = np.asarray(palette[int(rng.integers(len(palette)))]) + rng.uniform(-jitter, jitter, 3)
    return tuple(float(x) for x in np.clip(c, 0.02, 0.98))


def make_performer(seed: int, subject: int) -> Performer:
    """Performer ``subject`` of dataset ``seed``: height 1.50-1.90 m, per-limb scales, girth 0.8-1.3."""
    rng = rng_for(seed, "performer", subject)
    height = float(rng.uniform(1.50, 1.90))
    scale = {
        "arm": rng.uniform(0.93, 1.07), "leg": rng.uniform(0.94, 1.06), "torso": rng.uniform(0.95, 1.05),
        "shoulder": rng.uniform(0.9, 1.1),
    }  # fmt: skip
    girth = float(rng.uniform(0.8, 1.3))
    group = {
        "upper_arm": "arm", "forearm": "arm", "hand": "arm", "thigh": "leg", "shin": "leg",
        "spine1": "torso", "spine2": "torso", "shoulder_w": "shoulder",
    }  # fmt: skip
    lengths = {k: float(f * height * scale.get(group.get(k, ""), 1.0)) for k, f in _LENGTH_FRACTIONS.items()}
    lengths["hip_w"] *= float(np.sqrt(girth))
    hs = height / 1.75
    g = girth
    radii = {
        "torso": 0.085 * g * hs, "spine": 0.10 * g * hs, "pelvis": 0.105 * g * hs, "shoulders": 0.06 * hs,
        "neck": 0.05 * hs, "head": 0.095 * hs, "upper_arm": 0.048 * g**0.7 * hs, "elbow": 0.04 * g**0.5 * hs,
        "wrist": 0.032 * hs, "hand": 0.038 * hs, "thigh": 0.08 * g * hs, "knee": 0.058 * g**0.6 * hs,
        "ankle": 0.045 * hs, "shoe": 0.045 * hs,
    }  # fmt: skip
    colors = {
        "skin": _pick(rng, _SKIN, 0.03), "hair": _pick(rng, _HAIR, 0.04), "shirt": _pick(rng, _SHIRT),
        "trousers": _pick(rng, _TROUSERS), "shoes": _pick(rng, _SHOES, 0.03),
    }  # fmt: skip
    patterns = {}
    for part in ("shirt", "trousers"):
        kind = str(
            rng.choice(
                ["solid", "stripes", "speckle"], p=[0.45, 0.35, 0.2] if part == "shirt" else [0.7, 0.1, 0.2]
            )
        )
        patterns[part] = (kind, float(rng.uniform(0.04, 0.12)), float(rng.uniform(0.25, 0.5)))
    style = {
        "speed": float(rng.uniform(0.85, 1.15)),        # tempo of periodic motions
        "amplitude": float(rng.uniform(0.88, 1.1)),      # reach / angle amplitude
        "arm_hang": float(np.deg2rad(rng.uniform(4, 12))),  # arms held slightly out from the body
        "posture": float(np.deg2rad(rng.uniform(-3, 5))),   # habitual forward lean of the trunk
        "stance": float(rng.uniform(0.9, 1.3)),          # feet apart, relative to hip width
    }  # fmt: skip
    return Performer(
        subject=int(subject),
        height=height,
        girth=girth,
        lengths=lengths,
        radii=radii,
        colors=colors,
        patterns=patterns,
        sleeves=str(rng.choice(["long", "short"])),
        legwear=str(rng.choice(["trousers", "shorts"], p=[0.8, 0.2])),
        style=style,
        body_id=72057594037927936 + int(rng.integers(1000, 60000)),  # Kinect-like bodyID (NTU files)
    )


@dataclass
class PoseTrack:
    """Per-frame pose parameters (``F`` frames) in the performer's ground frame (see ``geometry``).

    Angles in radians: ``yaw`` turns the whole body (0 faces ``-z``); ``pelvis_pitch``/``trunk_pitch`` lean
    forward when positive (pelvis rotation moves everything above the hips, the legs are re-solved by IK);
    ``trunk_roll`` bends sideways, ``trunk_twist`` turns the chest, ``head_pitch`` nods down when positive.
    ``wrist[s]`` is the wrist target relative to shoulder ``s`` in the chest frame, ``elbow_pole[s]`` where
    the elbow should point (chest frame); ``ankle[s]`` the ankle target in the ground frame, ``knee_pole[s]``
    the knee direction in the yaw-rotated ground frame; ``wrist_flex[s]`` bends the hand (positive = back of
    the hand towards the forearm's outside, palm forward when pushing). ``s`` is ``"l"`` or ``"r"``.
    """

    root: np.ndarray
    yaw: np.ndarray
    pelvis_pitch: np.ndarray
    trunk_pitch: np.ndarray
    trunk_roll: np.ndarray
    trunk_twist: np.ndarray
    head_pitch: np.ndarray
    head_yaw: np.ndarray
    wrist: dict[str, np.ndarray] = field(default_factory=dict)
    elbow_pole: dict[str, np.ndarray] = field(default_factory=dict)
    wrist_flex: dict[str, np.ndarray] = field(default_factory=dict)
    ankle: dict[str, np.ndarray] = field(default_factory=dict)
    knee_pole: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.root.shape[0])


def trunk_frames(track: PoseTrack) -> tuple[np.ndarray, np.ndarray]:
    """Global rotations ``(G_pelvis, G_chest)``, each ``(F, 3, 3)``, of the trunk chain."""
    g_pelvis = rot_y(track.yaw) @ rot_x(-track.pelvis_pitch)
    g_chest = g_pelvis @ rot_y(track.trunk_twist) @ rot_x(-track.trunk_pitch) @ rot_z(-track.trunk_roll)
    return g_pelvis, g_chest


def lower_root_for_feet(track: PoseTrack, perf: Performer) -> None:
    """Lower the root where a leg could not reach its ankle target, so feet stay on the floor (in place)."""
    L = perf.lengths
    leg = (L["thigh"] + L["shin"]) * 0.995
    g_pelvis, _ = trunk_frames(track)
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        hip = track.root + np.einsum("fij,j->fi", g_pelvis, [sgn * L["hip_w"], -L["hip_drop"], 0.0])
        d = track.ankle[side] - hip
        horiz = np.hypot(d[:, 0], d[:, 2])
        need = np.sqrt(np.maximum(leg * leg - horiz * horiz, 0.0))  # vertical hip-ankle distance allowed
        excess = np.maximum(-d[:, 1] - need, 0.0)
        track.root[:, 1] -= excess


def _two_link(root, target, l1, l2, pole, *, flip_hinge=False):
    """Analytic two-link IK: returns (middle joint, end joint, hinge axis), all (F, 3).

    Targets out of reach are clamped onto the reachable shell (the limb straightens or folds fully) so the
    segment lengths always stay exact. The hinge axis is ``pole x reach`` so a limb bending away from its pole
    keeps one consistent frame orientation even when it is straight.
    """
    d_vec = target - root
    d_raw = np.linalg.norm(d_vec, axis=-1, keepdims=True)
    n = d_vec / np.maximum(d_raw, 1e-9)
    d = np.clip(d_raw, abs(l1 - l2) + 1e-3, (l1 + l2) * 0.9995)
    end = root + n * d
    x = (l1 * l1 - l2 * l2 + d * d) / (2 * d)
    r = np.sqrt(np.maximum(l1 * l1 - x * x, 0.0))
    m = pole - np.sum(pole * n, axis=-1, keepdims=True) * n
    m_norm = np.linalg.norm(m, axis=-1, keepdims=True)
    # A pole parallel to the limb leaves the bending plane undefined; any perpendicular then does.
    alt = np.cross(n, np.array([0.0, 0.0, 1.0]))
    alt = np.where(np.linalg.norm(alt, axis=-1, keepdims=True) < 1e-3, np.cross(n, [1.0, 0.0, 0.0]), alt)
    m = np.where(m_norm < 1e-6, normalize(alt), m / np.maximum(m_norm, 1e-9))
    mid = root + x * n + r * m
    hinge = normalize(np.cross(m, n))
    if flip_hinge:
        hinge = -hinge
    return mid, end, hinge


def _frame(hinge: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Rotation whose x column is ``hinge`` and whose ``-y`` column is the bone direction ``down``."""
    y = -normalize(down)
    x = normalize(hinge - np.sum(hinge * y, axis=-1, keepdims=True) * y)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


@dataclass
class BodyPose:
    """The solved body: ``joints`` (F, 25, 3) and ``extra`` points (F, E, 3) in the ground frame,
    ``frames`` (F, 25, 3, 3) global segment rotations (identity for leaf joints, see ``LEAF_JOINTS``)."""

    joints: np.ndarray
    extra: np.ndarray
    frames: np.ndarray


EXTRA_POINTS: tuple[str, ...] = ("hair_l", "hair_r", "heel_l", "heel_r", "chest")


def solve_pose(perf: Performer, track: PoseTrack) -> BodyPose:
    """Forward kinematics of the trunk plus two-link IK for the limbs -> :class:`BodyPose`."""
    L = perf.lengths
    F = track.num_frames
    J = np.zeros((F, 25, 3))
    R = np.tile(np.eye(3), (F, 25, 1, 1))
    g_pelvis, g_chest = trunk_frames(track)
    g_head = g_chest @ rot_y(track.head_yaw) @ rot_x(-track.head_pitch)

    def up(g: np.ndarray, v: tuple[float, float, float]) -> np.ndarray:
        return np.einsum("fij,j->fi", g, np.asarray(v, dtype=np.float64))

    J[:, 0] = track.root
    J[:, 1] = J[:, 0] + up(g_pelvis, (0, L["spine1"], 0))
    J[:, 20] = J[:, 1] + up(g_chest, (0, L["spine2"], 0))
    J[:, 2] = J[:, 20] + up(g_chest, (0, L["neck"], 0))
    J[:, 3] = J[:, 2] + up(g_head, (0, L["head"], 0))
    R[:, 0], R[:, 1], R[:, 20], R[:, 2] = g_pelvis, g_chest, g_chest, g_head
    yaw_r = rot_y(track.yaw)
    for side, sgn, (sh, el, wr, ha, tip, th) in (
        ("l", -1, (4, 5, 6, 7, 21, 22)),
        ("r", 1, (8, 9, 10, 11, 23, 24)),
    ):
        J[:, sh] = J[:, 20] + up(g_chest, (sgn * L["shoulder_w"], -L["shoulder_drop"], 0))
        target = J[:, sh] + np.einsum("fij,fj->fi", g_chest, track.wrist[side])
        pole = np.einsum("fij,fj->fi", g_chest, track.elbow_pole[side])
        mid, end, hinge = _two_link(J[:, sh], target, L["upper_arm"], L["forearm"], pole)
        J[:, el], J[:, wr] = mid, end
        R[:, sh] = _frame(hinge, mid - J[:, sh])
        R[:, el] = _frame(hinge, end - mid)
        R[:, wr] = R[:, el] @ rot_x(track.wrist_flex[side])
        R[:, ha] = R[:, wr]
        J[:, ha] = J[:, wr] + up(R[:, wr], (0, -L["hand"], 0))
        J[:, tip] = J[:, ha] + up(R[:, wr], (0, -L["hand_tip"], 0))
        J[:, th] = J[:, ha] + up(R[:, wr], (-sgn * 0.022, -0.012, -0.03))  # thumb: inwards and forwards
    for side, sgn, (hp, kn, an, ft) in (("l", -1, (12, 13, 14, 15)), ("r", 1, (16, 17, 18, 19))):
        J[:, hp] = J[:, 0] + up(g_pelvis, (sgn * L["hip_w"], -L["hip_drop"], 0))
        pole = np.einsum("fij,fj->fi", yaw_r, track.knee_pole[side])
        mid, end, hinge = _two_link(J[:, hp], track.ankle[side], L["thigh"], L["shin"], pole, flip_hinge=True)
        J[:, kn], J[:, an] = mid, end
        R[:, hp] = _frame(hinge, mid - J[:, hp])
        R[:, kn] = _frame(hinge, end - mid)
        g_foot = rot_y(track.yaw - sgn * np.deg2rad(8.0))  # feet flat, toes turned slightly out
        R[:, an] = g_foot
        J[:, ft] = J[:, an] + up(g_foot, (0, -L["foot_drop"], -L["foot_fwd"]))
    hr = perf.radii["head"]
    extra = np.stack(
        [
            J[:, 3] + up(g_head, (-0.25 * hr, 0.3 * hr, 0.22 * hr)),
            J[:, 3] + up(g_head, (0.25 * hr, 0.3 * hr, 0.22 * hr)),
            J[:, 14] + up(rot_y(track.yaw), (0, -L["foot_drop"], 0.035)),
            J[:, 18] + up(rot_y(track.yaw), (0, -L["foot_drop"], 0.035)),
            J[:, 1] + up(g_chest, (0, 0.5 * L["spine2"], -0.25 * perf.radii["spine"])),
        ],
        axis=1,
    )
    return BodyPose(joints=J, extra=extra, frames=R)


# Capsules of the body surface: (point a, point b, radius key a, radius key b, clothing part). Points index
# the 25 joints, then EXTRA_POINTS (25 + k). The trunk is three vertical columns so it is wider than deep.
CAPSULES: tuple[tuple[int, int, str, str, str], ...] = (
    (12, 4, "torso", "shoulders", "shirt"), (16, 8, "torso", "shoulders", "shirt"),
    (0, 20, "spine", "spine", "shirt"), (1, 29, "spine", "torso", "shirt"),
    (4, 8, "shoulders", "shoulders", "shirt"),
    (12, 16, "pelvis", "pelvis", "trousers"),
    (20, 3, "neck", "neck", "skin"), (3, 3, "head", "head", "skin"),
    (25, 26, "head", "head", "hair"),
    (4, 5, "upper_arm", "elbow", "shirt"), (8, 9, "upper_arm", "elbow", "shirt"),
    (5, 6, "elbow", "wrist", "forearm"), (9, 10, "elbow", "wrist", "forearm"),
    (6, 7, "wrist", "hand", "skin"), (10, 11, "wrist", "hand", "skin"),
    (7, 21, "hand", "wrist", "skin"), (11, 23, "hand", "wrist", "skin"),
    (12, 13, "thigh", "knee", "trousers"), (16, 17, "thigh", "knee", "trousers"),
    (13, 14, "knee", "ankle", "shin"), (17, 18, "knee", "ankle", "shin"),
    (27, 15, "shoe", "shoe", "shoes"), (28, 19, "shoe", "shoe", "shoes"),
)  # fmt: skip
