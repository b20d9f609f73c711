"""The motions of the synthetic action classes.

Each motion is a function ``(performer, n_frames, rng) -> PoseTrack``. Per sample it draws its own tempo,
amplitude, phase, start and end times; the performer adds a personal style (``Performer.style``) and every
sample carries idle motion (sway, breathing, head wobble) so no two samples are alike. The classes that use
them (names, pairs, held objects) are listed in :mod:`.actions`.
"""

from __future__ import annotations

import numpy as np

from .body import Performer, PoseTrack, lower_root_for_feet, trunk_frames
from .geometry import lerp, rot_y, smooth_noise, smoothstep

FPS = 30.0

# ----------------------------------------------------------------------------------------------- helpers


def _envelope(n: int, rng: np.random.Generator, perf: Performer, rise=(0.18, 0.3)) -> np.ndarray:
    """(n,) in [0, 1]: rest -> smooth rise -> hold -> smooth fall -> rest, with random start/end."""
    t = np.arange(n, dtype=np.float64)
    t0 = rng.uniform(0.03, 0.14) * n
    t1 = n - rng.uniform(0.03, 0.14) * n
    r = rng.uniform(*rise) * (t1 - t0) / perf.style["speed"]
    r = min(r, 0.45 * (t1 - t0))
    return smoothstep((t - t0) / r) * (1.0 - smoothstep((t - (t1 - r)) / r))


def _cycle(n: int, rng: np.random.Generator, perf: Performer, hz: tuple[float, float]) -> np.ndarray:
    """(n,) phase in radians of a periodic motion with a per-sample tempo and a random phase."""
    f = rng.uniform(*hz) * perf.style["speed"]
    return 2 * np.pi * f * np.arange(n) / FPS + rng.uniform(0, 2 * np.pi)


def _vec(n: int, x: float, y: float, z: float) -> np.ndarray:
    return np.tile(np.array([x, y, z], dtype=np.float64), (n, 1))


def _reach(perf: Performer) -> float:
    return perf.lengths["upper_arm"] + perf.lengths["forearm"]


def _hang_arms(track: PoseTrack, perf: Performer, swing: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Wrist targets (chest frame) of arms hanging under gravity, whatever the trunk lean.

    ``swing`` (n,) radians swings them forward (positive) for balance.
    """
    n = track.num_frames
    _, g_chest = trunk_frames(track)
    out = {}
    sw = np.zeros(n) if swing is None else swing
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        a = perf.style["arm_hang"]
        d_ground = np.stack([np.full(n, sgn * np.sin(a)), -np.cos(a) * np.cos(sw), -np.sin(sw)], -1)
        d_world = np.einsum("fij,fj->fi", _yaw(track), d_ground)
        d_chest = np.einsum("fji,fj->fi", g_chest, d_world)  # G^T d
        out[side] = d_chest * 0.95 * _reach(perf) + _vec(n, 0, 0, -0.02)
    return out


def _yaw(track: PoseTrack) -> np.ndarray:
    return rot_y(track.yaw)


def _base(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    """Standing at rest with idle motion; arms hanging, feet under the hips, slight knee bend."""
    L = perf.lengths
    wob = smooth_noise(rng, n, dims=6, freqs=(0.15, 0.4, 0.9))
    stance = L["hip_w"] * perf.style["stance"]
    root = np.zeros((n, 3))
    root[:, 0] = 0.012 * wob[:, 0]  # weight shifting from foot to foot
    root[:, 1] = perf.stand_height - 0.012 + 0.004 * wob[:, 1]  # knees not locked
    root[:, 2] = 0.01 * wob[:, 2]
    track = PoseTrack(
        root=root,
        yaw=0.03 * wob[:, 3],
        pelvis_pitch=np.full(n, perf.style["posture"] * 0.4),
        trunk_pitch=np.full(n, perf.style["posture"]) + 0.01 * wob[:, 4],
        trunk_roll=0.015 * wob[:, 5],
        trunk_twist=np.zeros(n),
        head_pitch=0.05 * smooth_noise(rng, n)[:, 0],
        head_yaw=0.08 * smooth_noise(rng, n)[:, 0],
    )
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        track.elbow_pole[side] = _vec(n, sgn * 0.3, 0.0, 1.0)  # elbows point back and out
        track.wrist_flex[side] = np.zeros(n)
        track.ankle[side] = _vec(n, sgn * stance, L["ankle_h"], 0.0)
        track.knee_pole[side] = _vec(n, sgn * 0.15, 0.0, -1.0)  # knees point forward, slightly out
    track.wrist.update(_hang_arms(track, perf))
    return track


# ----------------------------------------------------------------------------------------------- classes
# Wrist targets are relative to the shoulder in the chest frame: +x right, +y up, -z forward (metres).


def push_forward(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf, rise=(0.25, 0.35))
    amp = perf.style["amplitude"] * rng.uniform(0.9, 1.05)
    reach = _reach(perf)
    ready = np.clip(2 * e, 0, 1)  # hands come up to the chest first,
    out = smoothstep(np.clip(2 * e - 1, 0, 1))  # then are pushed out towards the camera
    drop = rng.uniform(0.1, 0.18)
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        chest = _vec(n, -sgn * 0.08, -drop - 0.04, -0.2)
        push = _vec(n, -sgn * rng.uniform(0.06, 0.1), -drop, -min(0.96, 0.93 * amp) * reach)
        tr.wrist[side] = lerp(lerp(tr.wrist[side], chest, ready), push, out)
        tr.elbow_pole[side] = _vec(n, sgn * 0.5, -1.0, 0.2)
        tr.wrist_flex[side] = np.deg2rad(rng.uniform(50, 70)) * e
    tr.trunk_pitch += np.deg2rad(6) * out
    return tr


def hands_to_chest(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf)
    drop = rng.uniform(0.14, 0.22)
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        chest = _vec(n, -sgn * rng.uniform(0.02, 0.07), -drop, -0.17 - rng.uniform(0, 0.03))
        tr.wrist[side] = lerp(tr.wrist[side], chest, e)
        tr.elbow_pole[side] = _vec(n, sgn * 0.7, -1.0, 0.1)
        tr.wrist_flex[side] = np.deg2rad(rng.uniform(5, 25)) * e
    tr.head_pitch += np.deg2rad(rng.uniform(5, 15)) * e
    return tr


def point_forward(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf)
    elev = np.deg2rad(rng.uniform(-12, 4))  # roughly at the camera lens, which is below shoulder height
    d = np.array([-np.sin(np.deg2rad(rng.uniform(0, 8))), np.sin(elev), -1.0])
    target = np.tile(d / np.linalg.norm(d) * 0.985 * _reach(perf), (n, 1))
    tr.wrist["r"] = lerp(tr.wrist["r"], target, e)
    tr.elbow_pole["r"] = _vec(n, 0.6, -1.0, 0.3)
    tr.wrist_flex["r"] = np.deg2rad(rng.uniform(-5, 10)) * e
    return tr


def hand_to_shoulder(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf)
    # The hand rises in front of the right shoulder, the elbow stays low in front of the chest: from the
    # front the hand covers the shoulder as a pointing hand does, but it is 0.4-0.5 m further from the lens.
    target = _vec(n, rng.uniform(-0.05, 0.0), rng.uniform(-0.03, 0.04), -rng.uniform(0.14, 0.2))
    tr.wrist["r"] = lerp(tr.wrist["r"], target, e)
    tr.elbow_pole["r"] = _vec(n, 0.15, -1.0, -0.6)
    tr.wrist_flex["r"] = np.deg2rad(rng.uniform(-25, -10)) * e
    return tr


def _lean(perf: Performer, n: int, rng: np.random.Generator, forward: bool) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf)
    ang = np.deg2rad(rng.uniform(30, 45) if forward else -rng.uniform(18, 28)) * perf.style["amplitude"] * e
    tr.pelvis_pitch += 0.55 * ang
    tr.trunk_pitch += 0.45 * ang
    tr.head_pitch -= 0.4 * ang  # keeps looking ahead
    # Hips move against the lean to keep the centre of mass above the feet.
    tr.root[:, 2] += 0.22 * np.sin(ang) * perf.lengths["spine1"] / 0.236
    tr.wrist.update(_hang_arms(tr, perf))
    lower_root_for_feet(tr, perf)
    return tr


def lean_forward(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    return _lean(perf, n, rng, True)


def lean_backward(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    return _lean(perf, n, rng, False)


def _step(perf: Performer, n: int, rng: np.random.Generator, forward: bool) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf, rise=(0.25, 0.35))
    length = rng.uniform(0.3, 0.45) * perf.style["amplitude"] * perf.height / 1.75
    sgn_dir = -1.0 if forward else 1.0  # -z is towards the camera
    # The foot moves during the first part of the rise (lifted on an arc), the weight follows after it.
    foot = smoothstep(np.clip(e * 1.6, 0, 1))
    lift = 0.07 * np.sin(np.pi * foot)  # non-zero only while the foot travels
    tr.ankle["r"][:, 2] += sgn_dir * length * foot
    tr.ankle["r"][:, 1] += lift
    shift = smoothstep(np.clip(e * 1.6 - 0.6, 0, 1))
    tr.root[:, 2] += sgn_dir * 0.5 * length * shift
    tr.trunk_pitch += np.deg2rad(rng.uniform(3, 8)) * e * (1.0 if forward else 0.6)
    swing = np.deg2rad(rng.uniform(5, 15)) * e * (-1 if forward else 1)
    tr.wrist.update({"l": _hang_arms(tr, perf, swing)["l"], "r": _hang_arms(tr, perf, -swing)["r"]})
    lower_root_for_feet(tr, perf)
    return tr


def step_forward(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    return _step(perf, n, rng, True)


def step_backward(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    return _step(perf, n, rng, False)


def wave(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf, rise=(0.12, 0.2))
    ph = _cycle(n, rng, perf, (1.6, 2.6))
    side_amp = rng.uniform(0.08, 0.14) * perf.style["amplitude"]
    raised = _vec(n, rng.uniform(0.18, 0.26), rng.uniform(0.12, 0.22), -rng.uniform(0.02, 0.1))
    raised[:, 0] += side_amp * np.sin(ph)
    tr.wrist["r"] = lerp(tr.wrist["r"], raised, e)
    tr.elbow_pole["r"] = _vec(n, 1.0, -1.0, 0.2)
    tr.wrist_flex["r"] = np.deg2rad(15) * np.sin(ph + 0.5) * e
    return tr


def clap(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf, rise=(0.12, 0.2))
    ph = _cycle(n, rng, perf, (1.8, 2.6))
    open_ = 0.5 + 0.5 * np.cos(ph)  # 1 = hands apart, 0 = palms together
    apart = rng.uniform(0.18, 0.26) * perf.style["amplitude"]
    fwd, drop = rng.uniform(0.28, 0.38), rng.uniform(0.12, 0.2)
    sw = perf.lengths["shoulder_w"]
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        x = -sgn * sw + sgn * (0.03 + apart * open_)  # relative to the shoulder; hands meet on the midline
        target = np.stack([x, np.full(n, -drop), np.full(n, -fwd)], -1)
        tr.wrist[side] = lerp(tr.wrist[side], target, e)
        tr.elbow_pole[side] = _vec(n, sgn * 0.8, -1.0, 0.2)
        tr.wrist_flex[side] = np.deg2rad(-20) * e
    return tr


def squat(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf, rise=(0.3, 0.4))
    depth = rng.uniform(0.3, 0.42) * perf.style["amplitude"] * perf.height / 1.75
    tr.root[:, 1] -= depth * e
    tr.root[:, 2] += 0.12 * e * depth / 0.35
    tr.pelvis_pitch += np.deg2rad(rng.uniform(15, 25)) * e
    tr.trunk_pitch += np.deg2rad(rng.uniform(5, 12)) * e
    tr.head_pitch -= np.deg2rad(15) * e
    hang = _hang_arms(tr, perf, np.deg2rad(rng.uniform(20, 45)) * e)
    tr.wrist.update(hang)
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        tr.knee_pole[side] = _vec(n, sgn * 0.35, 0.0, -1.0)
    return tr


def jumping_jack(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf, rise=(0.08, 0.15))
    ph = _cycle(n, rng, perf, (1.1, 1.6))
    c = (0.5 - 0.5 * np.cos(ph)) * e  # 0 closed, 1 open
    reach = _reach(perf)
    alpha = np.deg2rad(rng.uniform(140, 165)) * c * perf.style["amplitude"] + perf.style["arm_hang"]
    jump = rng.uniform(0.05, 0.1) * np.abs(np.sin(ph)) * e
    tr.root[:, 1] += jump
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        d = np.stack([sgn * np.sin(alpha), -np.cos(alpha), np.full(n, -0.08)], -1)
        tr.wrist[side] = d / np.linalg.norm(d, axis=-1, keepdims=True) * 0.97 * reach
        tr.elbow_pole[side] = _vec(n, 0.0, -0.4, 1.0)
        tr.ankle[side][:, 0] += sgn * rng.uniform(0.22, 0.3) * c
        tr.ankle[side][:, 1] += jump
    lower_root_for_feet(tr, perf)
    return tr


def hold_up_sign(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    """The right arm raised forward and out, holding up a 30 x 40 cm sign above the hand, then lowered
    (appearance pair: ``hold_up_red_sign`` and ``hold_up_yellow_sign`` differ only in the sign's colour)."""
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf, rise=(0.15, 0.25))
    reach = _reach(perf)
    elev = np.deg2rad(rng.uniform(10, 35)) * perf.style["amplitude"]
    d = np.array([rng.uniform(0.3, 0.6), np.sin(elev), -rng.uniform(0.5, 0.8)])
    raised = np.tile(d / np.linalg.norm(d) * 0.95 * reach, (n, 1))
    raised += 0.015 * smooth_noise(rng, n, dims=3, freqs=(0.5, 1.2))  # a held sign shakes a little
    tr.wrist["r"] = lerp(tr.wrist["r"], raised, e)
    tr.elbow_pole["r"] = _vec(n, 1.0, -1.0, 0.2)
    tr.wrist_flex["r"] = np.deg2rad(rng.uniform(-10, 10)) * e
    return tr


def lift_box(perf: Performer, n: int, rng: np.random.Generator) -> PoseTrack:
    """Both hands hold a 30 x 25 x 25 cm box by its sides in front of the body and lift it from the waist
    to the chest, then lower it (appearance pair: ``lift_red_box`` and ``lift_green_box`` differ only in
    the box's colour)."""
    tr = _base(perf, n, rng)
    e = _envelope(n, rng, perf, rise=(0.25, 0.35))
    sw = perf.lengths["shoulder_w"]
    low, high = rng.uniform(0.42, 0.5), rng.uniform(0.12, 0.2)  # below the shoulders: waist -> chest
    drop = lerp(np.full(n, low), np.full(n, high), e)
    fwd = rng.uniform(0.3, 0.36)
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        x = -sgn * sw + sgn * 0.17  # the hands 17 cm either side of the midline, on the box's sides
        tr.wrist[side] = np.stack([np.full(n, x), -drop, np.full(n, -fwd)], -1)
        tr.elbow_pole[side] = _vec(n, sgn * 0.6, -1.0, 0.3)
        tr.wrist_flex[side] = np.full(n, np.deg2rad(-10))
    tr.trunk_pitch += np.deg2rad(rng.uniform(2, 6)) * (1 - e)  # leaning a little over the box when low
    return tr
