"""Small vectorised geometry helpers and deterministic seeding for the synthetic generator.

Conventions (shared by every module of ``modistill.data.synth``):
- the *ground frame* of a performer: origin on the floor below the performer's starting position, ``+x`` to
  the performer's right, ``+y`` up, ``-z`` the direction the performer faces (towards camera C001 at yaw 0);
- rotation matrices act on column vectors; arrays of them are ``(F, 3, 3)``;
- camera space follows the Kinect convention (REF §4): ``x`` grows with the image column, ``y`` up, ``z``
  along the optical axis, metres; a pixel is ``u = cx + fx * x / z``, ``v = cy - fy * y / z``.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = [
    "rng_for",
    "rot_x",
    "rot_y",
    "rot_z",
    "normalize",
    "smoothstep",
    "lerp",
    "quat_from_matrix",
    "smooth_noise",
]


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator seeded from ``(seed, *keys)`` through SHA-256.

    Python's ``hash`` is salted per process, so a stable digest is what makes every worker of a parallel run
    draw exactly what a serial run draws for the same sample, performer or setup.
    """
    text = "/".join([str(int(seed))] + [str(k) for k in keys])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    words = np.frombuffer(digest, dtype=np.uint32)
    return np.random.default_rng(np.random.SeedSequence(words.tolist()))


def _as_angles(a: np.ndarray | float) -> np.ndarray:
    return np.atleast_1d(np.asarray(a, dtype=np.float64))


def rot_x(a: np.ndarray | float) -> np.ndarray:
    """Rotations about ``x`` by angles ``a`` (F,) radians -> (F, 3, 3); positive turns ``+y`` to ``+z``."""
    a = _as_angles(a)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def rot_y(a: np.ndarray | float) -> np.ndarray:
    """Rotations about ``y`` (F,) -> (F, 3, 3); positive turns ``+z`` towards ``+x``."""
    a = _as_angles(a)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_z(a: np.ndarray | float) -> np.ndarray:
    """Rotations about ``z`` (F,) -> (F, 3, 3); positive turns ``+x`` towards ``+y``."""
    a = _as_angles(a)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def normalize(v: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """Unit vectors along the last axis (zero vectors stay zero)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, eps)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """``3x^2 - 2x^3`` on ``x`` clipped to [0, 1]: a ramp with zero velocity at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``a + (b - a) * t`` with ``t`` (F,) broadcast over trailing vector axes of ``a``/``b``."""
    a, b, t = np.asarray(a, float), np.asarray(b, float), np.asarray(t, float)
    while t.ndim < max(a.ndim, b.ndim):
        t = t[..., None]
    return a + (b - a) * t


def quat_from_matrix(r: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(w, x, y, z)`` with ``w >= 0`` of rotation matrices ``(..., 3, 3)`` -> ``(..., 4)``.

    Shepperd's method: pick the largest of the four squared components so the division is well conditioned.
    """
    r = np.asarray(r, dtype=np.float64)
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    cands = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    k = np.argmax(cands, axis=-1)
    s = np.sqrt(np.maximum(np.take_along_axis(cands, k[..., None], -1)[..., 0], 1e-12)) * 2.0  # 4 * |q_k|
    q = np.empty(r.shape[:-2] + (4,))
    d21, d02, d10 = r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]
    s01, s02, s12 = r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1]
    rows = [
        np.stack([s / 4, d21 / s, d02 / s, d10 / s], -1),
        np.stack([d21 / s, s / 4, s01 / s, s02 / s], -1),
        np.stack([d02 / s, s01 / s, s / 4, s12 / s], -1),
        np.stack([d10 / s, s02 / s, s12 / s, s / 4], -1),
    ]
    for i, row in enumerate(rows):
        q = np.where((k == i)[..., None], row, q)
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def smooth_noise(
    rng: np.random.Generator,
    n: int,
    *,
    dims: int = 1,
    freqs: tuple[float, ...] = (0.2, 0.5, 1.1),
    fps: float = 30.0,
) -> np.ndarray:
    """Band-limited wobble ``(n, dims)`` in roughly [-1, 1]: a sum of sinusoids with random phases.

    Used for idle sway, head motion and style: cheap, smooth at any frame rate, fully determined by ``rng``.
    """
    t = np.arange(n, dtype=np.float64)[:, None] / fps
    out = np.zeros((n, dims))
    for f in freqs:
        ph = rng.uniform(0, 2 * np.pi, size=(1, dims))
        ff = f * rng.uniform(0.8, 1.25, size=(1, dims))
        out += np.sin(2 * np.pi * ff * t + ph)
    return out / len(freqs)
