"""Vectorised numpy rendering: bodies as chains of spheres splatted into a z-buffer, plus a textured room.

Each body capsule (``body.CAPSULES``) is sampled as overlapping spheres. A sphere projects to a disc; every
pixel of the disc gets the depth of the sphere's front surface and its normal (orthographic approximation
inside one sphere, exact perspective for the centres), and the nearest fragment per pixel wins. Both the
colour and the depth camera render the same spheres with their own intrinsics and poses, exactly as the two
Kinect sensors see one scene. The background is a box-shaped room (floor, walls, ceiling) with procedural
textures and clutter defined on the walls in world coordinates, so the three views of a setup show the same
room. Lighting: ambient plus one directional light (Lambert), a soft contact shadow on the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .actions import Prop
from .body import CAPSULES, BodyPose, Performer
from .camera import Intrinsics, Rig, Setup
from .geometry import normalize, rng_for

__all__ = [
    "SphereModel", "PROP_CAPSULE", "body_spheres", "prop_spheres", "splat", "Fragments", "render_room",
    "shade_rgb", "depth_image",
]  # fmt: skip


@dataclass
class SphereModel:
    """``centres`` (F, S, 3) world metres, ``radii`` (S,), ``albedo`` (S, 3) in [0, 1], ``capsule`` (S,) the
    index into ``body.CAPSULES`` each sphere samples (what the pretext's body-part labels are made of;
    :data:`PROP_CAPSULE` for a held object's spheres)."""

    centres: np.ndarray
    radii: np.ndarray
    albedo: np.ndarray
    capsule: np.ndarray

    def __add__(self, other: SphereModel) -> SphereModel:
        return SphereModel(
            centres=np.concatenate([self.centres, other.centres], axis=1),
            radii=np.concatenate([self.radii, other.radii]),
            albedo=np.concatenate([self.albedo, other.albedo]),
            capsule=np.concatenate([self.capsule, other.capsule]),
        )


# The capsule id of a held object's spheres: past the body's capsules, so a body-part lookup fails loudly.
PROP_CAPSULE = len(CAPSULES)


def _part_color(perf: Performer, part: str) -> tuple[str, tuple[float, float, float]]:
    if part == "forearm":
        part = "shirt" if perf.sleeves == "long" else "skin"
    elif part == "shin":
        part = "trousers" if perf.legwear == "trousers" else "skin"
    return part, perf.colors[part]


def body_spheres(perf: Performer, pose: BodyPose, seed: int) -> SphereModel:
    """Sample the performer's capsules as spheres spaced at half their radius -> :class:`SphereModel`."""
    pts = np.concatenate([pose.joints, pose.extra], axis=1)
    rest = pts[0]
    centres, radii, albedo, capsule = [], [], [], []
    rng = rng_for(seed, "texture", perf.subject)
    for ci, (a, b, ka, kb, part) in enumerate(CAPSULES):
        ra, rb = perf.radii[ka], perf.radii[kb]
        length = float(np.linalg.norm(rest[b] - rest[a]))
        n = 1 if a == b else int(np.ceil(length / (0.5 * min(ra, rb)))) + 1
        s = np.linspace(0.0, 1.0, n)
        centres.append(pts[:, a, None] * (1 - s)[None, :, None] + pts[:, b, None] * s[None, :, None])
        radii.append(ra * (1 - s) + rb * s)
        name, base = _part_color(perf, part)
        kind, period, contrast = perf.patterns.get(name, ("solid", 1.0, 0.0))
        factor = np.ones(n)
        if kind == "stripes":  # bands across the capsule axis (horizontal on the trunk)
            factor = 1.0 - contrast * (np.floor(s * length / period) % 2)
        elif kind == "speckle":
            factor = 1.0 + contrast * rng.uniform(-0.6, 0.6, n)
        albedo.append(np.clip(np.asarray(base)[None, :] * factor[:, None], 0, 1))
        capsule.append(np.full(n, ci, np.int16))
    return SphereModel(
        centres=np.concatenate(centres, axis=1),
        radii=np.concatenate(radii),
        albedo=np.concatenate(albedo),
        capsule=np.concatenate(capsule),
    )


def prop_spheres(prop: Prop, pose: BodyPose, world_rot: np.ndarray | None = None) -> SphereModel:
    """The spheres of ``prop`` held by the hands of ``pose`` (F frames; ``world_rot`` (3, 3) the
    rotation that placed the pose's joints but not its ``frames``, as in ``sample.synthesize``).

    A sign is a grid of 2 cm spheres spanning 30 x 40 cm above the right hand (its lower edge in the hand,
    face to the front); a box a 6 x 5 x 5 grid of 3 cm spheres filling 30 x 25 x 25 cm centred between the
    hands, square to the chest. Shape and placement depend only on the pose, never on the colour, so the
    two classes of an appearance pair render the same depth."""
    rot = pose.frames
    if world_rot is not None:
        rot = world_rot @ rot
    if prop.shape == "sign":  # in the right wrist's frame: -y along the fingers, z the palm's normal
        u, v = np.meshgrid(np.linspace(-0.14, 0.14, 9), np.linspace(0.02, 0.4, 12))
        local = np.stack([np.zeros(u.size), -v.ravel(), u.ravel()], -1)
        centres = pose.joints[:, 11, None] + np.einsum("fij,sj->fsi", rot[:, 10], local)
        radius = 0.02
    elif prop.shape == "box":  # in the chest's frame: x to the right, y up, -z forward
        g = np.meshgrid(*(np.linspace(-h, h, k) for h, k in ((0.12, 6), (0.095, 5), (0.095, 5))))
        local = np.stack([c.ravel() for c in g], -1)
        mid = 0.5 * (pose.joints[:, 11] + pose.joints[:, 7])  # between the two hands
        centres = mid[:, None] + np.einsum("fij,sj->fsi", rot[:, 20], local)
        radius = 0.03
    else:
        raise ValueError(f"unknown prop shape {prop.shape!r}")
    n = len(local)
    return SphereModel(
        centres=centres,
        radii=np.full(n, radius),
        albedo=np.tile(np.asarray(prop.color, np.float64), (n, 1)),
        capsule=np.full(n, PROP_CAPSULE, np.int16),
    )


@dataclass
class Fragments:
    """Per-pixel winners of the z-buffer for ``F`` frames of an ``H x W`` image.

    ``z`` (F, H, W) camera depth in metres (inf = background), ``sphere`` (F, H, W) int index of the sphere
    (-1 = background), ``normal`` (F, H, W, 3) unit surface normal in camera space (towards the camera).
    """

    z: np.ndarray
    sphere: np.ndarray
    normal: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.sphere >= 0


def splat(centres_cam: np.ndarray, radii: np.ndarray, K: Intrinsics, *, chunk: int = 16) -> Fragments:
    """Rasterise spheres ``centres_cam`` (F, S, 3) in camera space with ``radii`` (S,) into a z-buffer.

    Spheres are grouped by the half-size of their pixel footprint so each group is one dense numpy block;
    ``np.minimum.at`` resolves the z-test. Frames are processed ``chunk`` at a time to bound memory.
    """
    F, S = centres_cam.shape[:2]
    W, H = K.width, K.height
    z_out = np.full((F, H, W), np.inf, np.float32)
    id_out = np.full((F, H, W), -1, np.int32)
    n_out = np.zeros((F, H, W, 3), np.float32)
    for f0 in range(0, F, chunk):
        c = centres_cam[f0 : f0 + chunk]
        nf = c.shape[0]
        X, Y, Z = c[..., 0], c[..., 1], np.maximum(c[..., 2], 1e-3)
        valid = c[..., 2] > 0.2
        u = K.cx + K.fx * X / Z
        v = K.cy - K.fy * Y / Z
        rad = np.broadcast_to(radii, (nf, S))
        k = np.ceil(K.fx * rad / Z + 0.5).astype(np.int64)
        valid &= (u + k >= 0) & (u - k < W) & (v + k >= 0) & (v - k < H)
        keys, zs, sids, nrm = [], [], [], []
        for kk in np.unique(k[valid]):
            fi, si = np.nonzero(valid & (k == kk))
            off = np.arange(-kk, kk + 1)
            ui = np.rint(u[fi, si])[:, None, None] + off[None, None, :]
            vi = np.rint(v[fi, si])[:, None, None] + off[None, :, None]
            zc = Z[fi, si][:, None, None]
            dx = (ui - u[fi, si][:, None, None]) * zc / K.fx
            dy = -(vi - v[fi, si][:, None, None]) * zc / K.fy
            r = rad[fi, si][:, None, None]
            d2 = dx * dx + dy * dy
            inside = (d2 < r * r) & (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
            dz = np.sqrt(np.maximum(r * r - d2, 0.0))
            shape = inside.shape
            b = np.broadcast_to
            dx, dy, ui, vi = b(dx, shape), b(dy, shape), b(ui, shape), b(vi, shape)
            keys.append((b(fi[:, None, None], shape) * (H * W) + vi * W + ui)[inside].astype(np.int64))
            zs.append((zc - dz)[inside])
            sids.append(b(si[:, None, None], shape)[inside])
            nrm.append(np.stack([dx[inside], dy[inside], -dz[inside]], -1) / b(r, shape)[inside][:, None])
        if not keys:
            continue
        key, zz, sid, nn = np.concatenate(keys), np.concatenate(zs), np.concatenate(sids), np.concatenate(nrm)
        zbuf = np.full(nf * H * W, np.inf)
        np.minimum.at(zbuf, key, zz)
        win = zz <= zbuf[key]
        # Exact ties keep the later fragment; numpy's fancy assignment order makes that deterministic.
        zf = z_out[f0 : f0 + nf].reshape(-1)
        idf = id_out[f0 : f0 + nf].reshape(-1)
        nf_ = n_out[f0 : f0 + nf].reshape(-1, 3)
        zf[key[win]] = zz[win]
        idf[key[win]] = sid[win]
        nf_[key[win]] = nn[win]
    return Fragments(z=z_out, sphere=id_out, normal=n_out)


def _value_noise(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, cell: float) -> np.ndarray:
    """Smooth noise in [-1, 1] at plane coordinates ``(a, b)`` metres, with features of size ``cell``."""
    grid = rng.uniform(-1, 1, (64, 64))
    ga, gb = np.mod(a / cell, 63.0), np.mod(b / cell, 63.0)
    ia, ib = np.floor(ga).astype(int), np.floor(gb).astype(int)
    fa, fb = ga - ia, gb - ib
    fa, fb = fa * fa * (3 - 2 * fa), fb * fb * (3 - 2 * fb)
    g00, g10, g01, g11 = grid[ib, ia], grid[ib, ia + 1], grid[ib + 1, ia], grid[ib + 1, ia + 1]
    return (g00 * (1 - fa) + g10 * fa) * (1 - fb) + (g01 * (1 - fa) + g11 * fa) * fb


def _surface_texture(rng: np.random.Generator, kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Albedo ``(n, 3)`` of a room surface at plane coordinates ``(a, b)``: base colour, pattern, clutter."""
    base = rng.uniform(0.25, 0.85, 3) * rng.uniform(0.7, 1.0)
    col = np.tile(base, (a.size, 1))
    col *= (1 + 0.12 * _value_noise(rng, a, b, 0.35))[:, None]
    col *= (1 + 0.05 * _value_noise(rng, a, b, 0.05))[:, None]
    if kind == "floor":
        style = rng.integers(3)
        if style == 0:  # tiles with grout lines
            t = rng.uniform(0.3, 0.6)
            grout = (np.mod(a, t) < 0.02) | (np.mod(b, t) < 0.02)
            col[grout] *= 0.55
            col[(np.floor(a / t) + np.floor(b / t)) % 2 == 1] *= rng.uniform(0.75, 0.95)
        elif style == 1:  # planks
            w = rng.uniform(0.12, 0.22)
            plank = np.floor(a / w)
            col *= (0.85 + 0.3 * np.mod(plank * 0.6180339, 1.0))[:, None]
            col[np.mod(a, w) < 0.008] *= 0.5
    else:
        for _ in range(int(rng.integers(4, 10))):  # posters, doors, shelves, boxes, clocks
            c = rng.uniform(0.05, 0.95, 3)
            ca, cb = rng.uniform(-3.5, 3.5), rng.uniform(0.2, 2.4)
            if rng.random() < 0.7:
                ha, hb = rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.7)
                m = (np.abs(a - ca) < ha) & (np.abs(b - cb) < hb)
                if rng.random() < 0.5:  # striped or framed panel
                    m2 = m & (np.mod((a - ca) * rng.uniform(8, 25), 2.0) < 1.0)
                    col[m] = c * 0.7
                    col[m2] = c
                else:
                    col[m] = c
                    edge = m & ((np.abs(a - ca) > ha - 0.03) | (np.abs(b - cb) > hb - 0.03))
                    col[edge] *= 0.4
            else:
                rr = rng.uniform(0.08, 0.35)
                col[(a - ca) ** 2 + (b - cb) ** 2 < rr * rr] = c
    return np.clip(col, 0, 1)


def render_room(seed: int, setup: Setup, rig: Rig, K: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """The empty room seen by the colour camera -> (image (H, W, 3) float32 in [0, 1], floor_xz (H, W, 2)).

    ``floor_xz`` holds the world (x, z) of the floor point seen at each pixel (NaN off the floor), used to
    draw the performer's contact shadow. Textures are seeded per setup, so all three cameras see one room.
    """
    H, W = K.height, K.width
    uu, vv = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    d_cam = np.stack([(uu - K.cx) / K.fx, -(vv - K.cy) / K.fy, np.ones_like(uu)], -1).reshape(-1, 3)
    d = normalize(d_cam @ rig.rotation)  # rays in world coordinates
    o = rig.color_center()
    rm = setup.room
    # (axis, plane coordinate, surface, which world axes parametrise it)
    planes = [
        (1, 0.0, "floor", (0, 2)),
        (1, rm["ceiling"], "ceiling", (0, 2)),
        (2, rm["back"], "back", (0, 1)),
        (2, -rm["front"], "front", (0, 1)),
        (0, -rm["side"], "left", (2, 1)),
        (0, rm["side"], "right", (2, 1)),
    ]
    best_t = np.full(d.shape[0], np.inf)
    best_p = np.zeros(d.shape[0], int)
    for i, (ax, c, _, _) in enumerate(planes):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (c - o[ax]) / d[:, ax]
        t = np.where(t > 1e-6, t, np.inf)
        closer = t < best_t
        best_t[closer], best_p[closer] = t[closer], i
    hit = o + d * best_t[:, None]
    col = np.zeros((d.shape[0], 3))
    light = np.asarray(setup.light_dir)
    for i, (ax, _, name, (ia, ib)) in enumerate(planes):
        m = best_p == i
        if not m.any():
            continue
        tex = _surface_texture(rng_for(seed, "room", setup.setup, name), name, hit[m, ia], hit[m, ib])
        normal = np.zeros(3)
        normal[ax] = -np.sign(d[m, ax].mean())  # faces the camera
        lam = setup.ambient + setup.diffuse * max(0.0, float(normal @ light)) * 0.8
        col[m] = tex * lam
    floor_xz = np.where((best_p == 0)[:, None], hit[:, [0, 2]], np.nan)
    img = (col * np.asarray(setup.tint)).reshape(H, W, 3).astype(np.float32)
    return np.clip(img, 0, 1), floor_xz.reshape(H, W, 2).astype(np.float32)


def shade_rgb(
    frags: Fragments,
    albedo: np.ndarray,
    background: np.ndarray,
    floor_xz: np.ndarray,
    feet_xz: np.ndarray,
    light_cam: np.ndarray,
    setup: Setup,
    rng: np.random.Generator,
    *,
    gain: float,
    noise_sigma: float,
) -> np.ndarray:
    """Composite shaded bodies over the room -> (F, H, W, 3) uint8 RGB with blur and sensor noise.

    ``feet_xz`` (F, 2) world position of the contact shadow; ``light_cam`` (3,) light direction in camera
    space; ``gain`` the sample's exposure; ``noise_sigma`` the per-pixel Gaussian noise (in [0, 1] units).
    Works frame by frame with in-place float32 arithmetic: this is the generator's hot loop.
    """
    F, H, W = frags.z.shape
    out = np.empty((F, H, W, 3), np.uint8)
    bg = (background * 255.0).astype(np.float32).reshape(-1, 3)
    # The contact shadow only touches floor pixels near the feet: precompute that pixel subset once.
    flat_floor = floor_xz.reshape(-1, 2)
    centre = feet_xz.mean(0)
    reach = float(np.max(np.linalg.norm(feet_xz - centre, axis=1))) + 0.9
    near = np.flatnonzero(np.sum((np.nan_to_num(flat_floor, nan=1e6) - centre) ** 2, -1) < reach * reach)
    near_xz = flat_floor[near]
    tint = np.asarray(setup.tint, np.float32) * np.float32(255.0)
    light = light_cam.astype(np.float32)
    gains = (gain * (1 + 0.01 * rng.standard_normal(F))).astype(np.float32)  # exposure flicker
    # Temporal sensor noise: one table per sample, read at a random offset per frame (cheaper than fresh
    # normals for every pixel of every frame, and still different in every frame).
    n_px = H * W * 3
    table = rng.standard_normal(n_px + 65536, dtype=np.float32) * np.float32(noise_sigma * 255.0)
    offsets = rng.integers(0, 65536, F)
    fr = np.empty((H * W, 3), np.float32)
    for f in range(F):
        fr[:] = bg
        if near.size:
            d2 = np.sum((near_xz - feet_xz[f].astype(np.float32)) ** 2, -1)
            fr[near] *= (1.0 - 0.45 * np.exp(-d2 / 0.09))[:, None]
        m = frags.sphere[f].reshape(-1) >= 0
        if m.any():
            lam = setup.ambient + setup.diffuse * np.maximum(frags.normal[f].reshape(-1, 3)[m] @ light, 0.0)
            fr[m] = albedo[frags.sphere[f].reshape(-1)[m]].astype(np.float32) * lam[:, None] * tint
        img = fr.reshape(H, W, 3)
        img *= gains[f]
        cv2.GaussianBlur(img, (3, 3), 0.6, dst=img)  # optics: no perfectly sharp edges
        img += table[offsets[f] : offsets[f] + n_px].reshape(H, W, 3)
        np.clip(img, 0.0, 255.0, out=img)
        img += 0.5
        out[f] = img.astype(np.uint8)
    return out


def depth_image(frags: Fragments, rng: np.random.Generator, *, edge_dropout: float = 0.15) -> np.ndarray:
    """Masked depth in millimetres -> (F, h, w) uint16; background 0.

    Noise as a time-of-flight sensor: Gaussian with sigma growing with distance (about 1.5 mm + 1.5 mm/m^2,
    the axial-noise shape reported for Kinect v2), invalid pixels along silhouette edges (mixed pixels the
    sensor discards) and a few random holes.
    """
    z = frags.z.astype(np.float64)
    m = frags.mask
    zm = np.where(m, z, 0.0) * 1000.0
    sigma = 1.5 + 1.5 * np.where(m, z, 0.0) ** 2
    zm = zm + rng.standard_normal(zm.shape) * sigma
    pad = np.pad(m, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    interior = pad[:, :-2, 1:-1] & pad[:, 2:, 1:-1] & pad[:, 1:-1, :-2] & pad[:, 1:-1, 2:]
    drop = (m & ~interior & (rng.random(m.shape) < edge_dropout)) | (rng.random(m.shape) < 0.002)
    out = np.where(m & ~drop, np.clip(np.rint(zm), 1, 65535), 0)
    return out.astype(np.uint16)
