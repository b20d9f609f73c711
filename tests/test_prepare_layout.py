"""A hand-made NTU-layout dataset whose pixels encode the frame index, for the prepare/cache/dataset tests.

Frame ``i`` of every sample:
- RGB: uniform grey ``10 + 16 i`` (i < 15) with a white (250) vertical bar at nominal colour x in [700, 900];
- depth: uniform ``600 + 120 i`` mm with a far (4400 mm) bar over the SAME scene region, i.e. the bar's colour
  x mapped back through the true alignment ``colour = 2.9 * depth + (230, -50)`` (the NTU-like values of the
  fixtures README), so a correct aligned crop puts both bars in the same output columns;
- skeleton: one body whose 25 joints satisfy that alignment exactly.
With the "raw" depth encoding, ``raw = round(255 (d - 500) / 4000)`` also encodes ``i``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modistill.data.depth import write_depth_frames
from modistill.data.skeleton import NUM_JOINTS, Skeleton, read_skeleton, write_skeleton
from modistill.data.video import read_video_frames, write_video

TRUE_SCALE, TRUE_TX, TRUE_TY = 2.9, 230.0, -50.0
RGB_SIZE = (192, 108)  # (W, H): 1/10 of the nominal 1920x1080
DEPTH_SIZE = (128, 106)  # (W, H): 1/4 of the nominal 512x424
BAR_X = (700.0, 900.0)  # nominal colour pixels


def rgb_value(i: int | np.ndarray) -> np.ndarray:
    return 10 + 16 * np.asarray(i)


def depth_mm(i: int | np.ndarray) -> np.ndarray:
    return 600 + 120 * np.asarray(i)


def frame_of_rgb(v: float) -> int:
    return int(round((v - 10) / 16))


def frame_of_raw_depth(v: float) -> int:
    return int(round((v / 255 * 4000 + 500 - 600) / 120))


def make_frames(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (n, H, W, 3) uint8, depth (n, h, w) uint16) following the module docstring."""
    (W, H), (w, h) = RGB_SIZE, DEPTH_SIZE
    rgb = np.empty((n, H, W, 3), np.uint8)
    rgb[:] = rgb_value(np.arange(n)).astype(np.uint8)[:, None, None, None]
    cx0, cx1 = (int(round(x * W / 1920)) for x in BAR_X)
    rgb[:, :, cx0:cx1] = 250
    depth = np.empty((n, h, w), np.uint16)
    depth[:] = depth_mm(np.arange(n)).astype(np.uint16)[:, None, None]
    dx0, dx1 = (int(round((x - TRUE_TX) / TRUE_SCALE * w / 512)) for x in BAR_X)
    depth[:, :, dx0:dx1] = 4400
    return rgb, depth


def make_skeleton(n: int, seed: int = 0) -> Skeleton:
    rng = np.random.default_rng(seed)
    base = np.stack([rng.uniform(60, 450, NUM_JOINTS), rng.uniform(60, 380, NUM_JOINTS)], -1)
    motion = rng.normal(0, 2, (n, 1, NUM_JOINTS, 2))
    d = (base[None, None] + motion).astype(np.float32)  # (n, 1, 25, 2)
    c = (TRUE_SCALE * d + np.array([TRUE_TX, TRUE_TY], np.float32)).astype(np.float32)
    return Skeleton(
        joints_xyz=rng.normal(0, 0.5, (n, 1, NUM_JOINTS, 3)).astype(np.float32),
        depth_xy=d,
        color_xy=c,
        tracking=np.full((n, 1, NUM_JOINTS), 2, np.int8),
        body_ids=np.array([72057594037931101], np.int64),
        bodies_per_frame=np.ones((n,), np.int64),
    )


def make_ntu_root(
    root: Path,
    names: list[str],
    frames: int = 12,
    *,
    rgb_frames: dict[str, int] | None = None,
    no_skeleton: tuple[str, ...] = (),
    zero_body: tuple[str, ...] = (),
    truncated_skeleton: tuple[str, ...] = (),
    bad_video: tuple[str, ...] = (),
    no_depth: tuple[str, ...] = (),
) -> Path:
    """Write ``names`` in the NTU layout under ``root`` with the requested defects; returns ``root``."""
    rgb_frames = rgb_frames or {}
    for k, name in enumerate(names):
        rgb, depth = make_frames(frames)
        video = root / "nturgb+d_rgb" / f"{name}_rgb.avi"
        if name in bad_video:
            video.parent.mkdir(parents=True, exist_ok=True)
            video.write_bytes(b"this is not an AVI file" * 10)
        else:
            nr = rgb_frames.get(name, frames)
            write_video(video, make_frames(nr)[0])
        if name not in no_depth:
            write_depth_frames(root / "nturgb+d_depth_masked" / name, depth)
        sk_path = root / "nturgb+d_skeletons" / f"{name}.skeleton"
        if name in no_skeleton:
            continue
        write_skeleton(
            sk_path, Skeleton.empty(frames) if name in zero_body else make_skeleton(frames, seed=k)
        )
        if name in truncated_skeleton:
            data = sk_path.read_bytes()
            sk_path.write_bytes(data[: len(data) // 2])
    return root


# --------------------------------------------------------------------------------- the builder itself


def test_layout_is_readable_and_encodes_frames(tmp_path: Path) -> None:
    root = make_ntu_root(tmp_path, ["S001C001P001R001A001"], frames=6)
    v = read_video_frames(root / "nturgb+d_rgb" / "S001C001P001R001A001_rgb.avi", [0, 5])
    assert v.shape == (2, RGB_SIZE[1], RGB_SIZE[0], 3)
    assert [frame_of_rgb(np.median(f)) for f in v] == [0, 5]
    sk = read_skeleton(root / "nturgb+d_skeletons" / "S001C001P001R001A001.skeleton")
    assert sk.num_frames == 6 and sk.num_bodies == 1
    np.testing.assert_allclose(sk.color_xy[..., 0], TRUE_SCALE * sk.depth_xy[..., 0] + TRUE_TX, atol=1e-3)
    for i in range(25):
        assert frame_of_raw_depth(round(255 * (depth_mm(i) - 500) / 4000)) == i
