"""NTU RGB+D ``.skeleton`` files: a fast reader, a writer, and main-actor selection.

Format (REF §4): frame count; per frame a body count; per body one line of 10 fields (bodyID clippedEdges
handLeftConfidence handLeftState handRightConfidence handRightState isRestricted leanX leanY trackingState),
the joint count (25), then 25 lines of 12 fields (x y z depthX depthY colorX colorY orientationW orientationX
orientationY orientationZ trackingState). Line endings differ between copies (LF or CRLF), so the reader
tokenises on whitespace and walks the token stream; numbers are converted in one vectorised call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from modistill.core.atomic import write_bytes_atomic
from modistill.core.errors import ModistillError

__all__ = [
    "NUM_JOINTS",
    "BODY_INFO_FIELDS",
    "Skeleton",
    "SkeletonFormatError",
    "read_skeleton",
    "write_skeleton",
    "select_actors",
    "actor_scores",
]

NUM_JOINTS = 25
_JOINT_FIELDS = 12
# The per-body fields after bodyID, in file order (REF §4).
BODY_INFO_FIELDS: tuple[str, ...] = (
    "clippedEdges",
    "handLeftConfidence",
    "handLeftState",
    "handRightConfidence",
    "handRightState",
    "isRestricted",
    "leanX",
    "leanY",
    "trackingState",
)


class SkeletonFormatError(ModistillError, ValueError):
    """A ``.skeleton`` file is truncated or malformed; the message names the file and line."""


@dataclass
class Skeleton:
    """All bodies of one ``.skeleton`` file, bodies matched across frames by bodyID.

    Shapes (F frames, Bd distinct bodies, 25 joints); float arrays hold NaN where a body is absent:
    - ``joints_xyz`` (F, Bd, 25, 3) float32, metres (camera space);
    - ``depth_xy`` (F, Bd, 25, 2) float32, pixels of the nominal 512x424 depth frame;
    - ``color_xy`` (F, Bd, 25, 2) float32, pixels of the nominal 1920x1080 colour frame;
    - ``orientation`` (F, Bd, 25, 4) float32 quaternion (w, x, y, z);
    - ``tracking`` (F, Bd, 25) int8: 0 not tracked, 1 inferred, 2 tracked; -1 where the body is absent;
    - ``body_ids`` (Bd,) int64 (Kinect bodyIDs exceed float64 precision, so they are parsed as integers);
    - ``body_info`` (F, Bd, 9) float32, the body-line fields of :data:`BODY_INFO_FIELDS`;
    - ``bodies_per_frame`` (F,) int64, the body count written in each frame;
    - ``present`` (F, Bd) bool.
    ``path`` is the source file (or None for generated skeletons).
    """

    joints_xyz: np.ndarray
    depth_xy: np.ndarray
    color_xy: np.ndarray
    tracking: np.ndarray
    body_ids: np.ndarray
    bodies_per_frame: np.ndarray
    orientation: np.ndarray | None = None
    body_info: np.ndarray | None = None
    path: Path | None = None

    @property
    def num_frames(self) -> int:
        return int(self.bodies_per_frame.shape[0])

    @property
    def num_bodies(self) -> int:
        return int(self.body_ids.shape[0])

    @property
    def present(self) -> np.ndarray:
        """(F, Bd) bool: body b appears in frame f."""
        return self.tracking[..., 0] >= 0

    @classmethod
    def empty(cls, num_frames: int = 0, path: Path | None = None) -> Skeleton:
        """A skeleton with ``num_frames`` frames and no bodies (what a 0-body file parses to)."""
        f = int(num_frames)
        return cls(
            joints_xyz=np.full((f, 0, NUM_JOINTS, 3), np.nan, np.float32),
            depth_xy=np.full((f, 0, NUM_JOINTS, 2), np.nan, np.float32),
            color_xy=np.full((f, 0, NUM_JOINTS, 2), np.nan, np.float32),
            tracking=np.full((f, 0, NUM_JOINTS), -1, np.int8),
            body_ids=np.zeros((0,), np.int64),
            bodies_per_frame=np.zeros((f,), np.int64),
            orientation=np.full((f, 0, NUM_JOINTS, 4), np.nan, np.float32),
            body_info=np.full((f, 0, len(BODY_INFO_FIELDS)), np.nan, np.float32),
            path=path,
        )


def _line_of_token(data: bytes, token_index: int) -> int:
    """1-based line number of the token_index-th whitespace token (len(tokens) = one past the end).

    Only used on the error path, so a per-line loop is fine here.
    """
    seen = 0
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines, start=1):
        seen += len(line.split())
        if seen > token_index:
            return lineno
    # Past the last token: report the last non-empty line + 1 (where the missing data should have been).
    last = len(lines)
    while last > 1 and not lines[last - 1].strip():
        last -= 1
    return last + 1


def read_skeleton(path: str | Path) -> Skeleton:
    """Read an NTU ``.skeleton`` file (LF or CRLF) into a :class:`Skeleton`.

    Raises :class:`SkeletonFormatError` (a ``ValueError``) naming the file and line for truncated files,
    non-numeric tokens, wrong joint counts or trailing data; ``FileNotFoundError`` if absent.
    """
    path = Path(path)
    data = path.read_bytes()
    toks = data.split()
    lay = _walk(data, toks, path)
    values = _to_float(data, toks, path)
    n_frames, n_bd = len(lay.bodies_per_frame), len(lay.body_ids)
    out = Skeleton.empty(0, path)
    out.bodies_per_frame = lay.bodies_per_frame
    out.body_ids = np.asarray(lay.body_ids, np.int64)
    joints = np.full((n_frames, n_bd, NUM_JOINTS, _JOINT_FIELDS), np.nan, np.float32)
    info = np.full((n_frames, n_bd, len(BODY_INFO_FIELDS)), np.nan, np.float32)
    if lay.block_frame:
        starts = np.asarray(lay.block_info_start, np.int64)
        fr = np.asarray(lay.block_frame, np.int64)
        sl = np.asarray(lay.block_slot, np.int64)
        info[fr, sl] = values[starts[:, None] + np.arange(len(BODY_INFO_FIELDS))]
        jstart = starts + len(BODY_INFO_FIELDS) + 1
        joints[fr, sl] = values[jstart[:, None] + np.arange(NUM_JOINTS * _JOINT_FIELDS)].reshape(
            -1, NUM_JOINTS, _JOINT_FIELDS
        )
    out.joints_xyz = np.ascontiguousarray(joints[..., 0:3])
    out.depth_xy = np.ascontiguousarray(joints[..., 3:5])
    out.color_xy = np.ascontiguousarray(joints[..., 5:7])
    out.orientation = np.ascontiguousarray(joints[..., 7:11])
    tr = joints[..., 11]
    out.tracking = np.where(np.isnan(tr), -1, tr).astype(np.int8)
    out.body_info = info
    return out


class _Layout(NamedTuple):
    """Where the bodies of a skeleton file are: one entry per (frame, body) block in file order."""

    bodies_per_frame: np.ndarray  # (F,) int64
    body_ids: list[int]  # per body slot, in order of first appearance
    block_frame: list[int]  # frame of each block
    block_slot: list[int]  # body slot of each block
    block_info_start: list[int]  # token index of each block's first body-info field


def _walk(data: bytes, toks: list[bytes], path: Path) -> _Layout:
    """Walk the file's structure: one Python step per (frame, body), never per number."""
    n_tok = len(toks)

    def fail(tok_index: int, msg: str) -> SkeletonFormatError:
        return SkeletonFormatError(f"{path}:{_line_of_token(data, tok_index)}: {msg}")

    def int_at(i: int, what: str) -> int:
        if i >= n_tok:
            raise fail(i, f"file is truncated: expected {what}")
        try:
            return int(toks[i])
        except ValueError:
            raise fail(i, f"expected an integer {what}, got {toks[i][:40]!r}") from None

    n_frames = int_at(0, "frame count")
    if n_frames < 0:
        raise fail(0, f"negative frame count {n_frames}")
    i = 1
    lay = _Layout(np.zeros((n_frames,), np.int64), [], [], [], [])
    slot_of: dict[tuple[int, int], int] = {}
    for f in range(n_frames):
        nb = int_at(i, f"body count of frame {f + 1}")
        if nb < 0:
            raise fail(i, f"negative body count {nb} in frame {f + 1}")
        lay.bodies_per_frame[f] = nb
        i += 1
        seen_here: dict[int, int] = {}
        for b in range(nb):
            if i + 11 > n_tok:
                raise fail(n_tok, f"file is truncated inside body {b + 1} of frame {f + 1}")
            bid = int_at(i, f"bodyID (body {b + 1} of frame {f + 1})")
            nj = int_at(i + 10, f"joint count (body {b + 1} of frame {f + 1})")
            if nj != NUM_JOINTS:
                raise fail(i + 10, f"expected {NUM_JOINTS} joints, got {nj} (body {b + 1} of frame {f + 1})")
            # A bodyID repeated within one frame is kept as a separate body rather than overwritten.
            occ = seen_here.get(bid, 0)
            seen_here[bid] = occ + 1
            key = (bid, occ)
            if key not in slot_of:
                slot_of[key] = len(lay.body_ids)
                lay.body_ids.append(bid)
            lay.block_frame.append(f)
            lay.block_slot.append(slot_of[key])
            lay.block_info_start.append(i + 1)
            i += 11 + NUM_JOINTS * _JOINT_FIELDS
            if i > n_tok:
                raise fail(n_tok, f"file is truncated inside the joints of body {b + 1} of frame {f + 1}")
    if i < n_tok:
        raise fail(i, f"unexpected data after the {n_frames} frames announced in line 1")
    return lay


def _to_float(data: bytes, toks: list[bytes], path: Path) -> np.ndarray:
    """All tokens as float64 in one C-level pass; on failure locate the offending token and its line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.fromstring(data, dtype=np.float64, sep=" ")  # noqa: NPY201 - text mode is supported
        if values.shape[0] == len(toks):
            return values
    except (ValueError, DeprecationWarning):
        pass
    for k, t in enumerate(toks):  # slow path, errors only
        try:
            float(t)
        except ValueError:
            raise SkeletonFormatError(
                f"{path}:{_line_of_token(data, k)}: expected a number, got {t[:40]!r}"
            ) from None
    return np.array([float(t) for t in toks], np.float64)


def _fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.7g}"


def write_skeleton(path: str | Path, sk: Skeleton, *, newline: str = "\n") -> None:
    """Write ``sk`` in the NTU text format (7 significant digits, like the dataset's files).

    Absent bodies (NaN) are skipped per frame, so ``bodies_per_frame`` is recomputed from ``present``.
    Missing ``orientation``/``body_info`` are written as zeros (bodyInfo trackingState as 2). The file is
    written atomically (`modistill.core.atomic`).
    """
    path = Path(path)
    n_f, n_bd = sk.num_frames, sk.num_bodies
    present = sk.present
    orient = (
        sk.orientation if sk.orientation is not None else np.zeros((n_f, n_bd, NUM_JOINTS, 4), np.float32)
    )
    info = sk.body_info
    if info is None:
        info = np.zeros((n_f, n_bd, len(BODY_INFO_FIELDS)), np.float32)
        info[..., -1] = 2
    lines: list[str] = [str(n_f)]
    for f in range(n_f):
        bodies = np.flatnonzero(present[f])
        lines.append(str(len(bodies)))
        for b in bodies:
            inf = np.nan_to_num(info[f, b])
            fields = [str(int(sk.body_ids[b]))] + [
                _fmt(float(v)) if k in (6, 7) else str(int(v)) for k, v in enumerate(inf)
            ]
            lines.append(" ".join(fields))
            lines.append(str(NUM_JOINTS))
            block = np.concatenate(
                [sk.joints_xyz[f, b], sk.depth_xy[f, b], sk.color_xy[f, b], orient[f, b]], axis=1
            ).astype(np.float64)
            tr = sk.tracking[f, b]
            for j in range(NUM_JOINTS):
                lines.append(" ".join(_fmt(v) for v in block[j].tolist()) + f" {int(tr[j])}")
    write_bytes_atomic(path, (newline.join(lines) + newline).encode("ascii"))


def actor_scores(sk: Skeleton, *, min_frames: int = 11, max_spread_ratio: float = 0.8) -> np.ndarray:
    """Per-body plausibility-weighted activity score (Bd,) float64 used by :func:`select_actors`.

    Rule (common practice in NTU skeleton denoising, e.g. the "View Adaptive" / CTR-GCN preprocessing scripts
    that drop short-lived bodies and bodies wider than tall, then rank by motion; re-implemented, not copied):
    - ``frames`` = number of frames the body is present in;
    - ``motion`` = sum over joints and x, y, z of the variance over its present frames (metres²);
    - a body is *plausible* if it lasts at least ``min(min_frames, F)`` frames and, in at least half its
      frames, its x spread is at most ``max_spread_ratio`` times its y spread (people stand upright;
      furniture and reflections detected as bodies are short-lived, static, or wider than tall);
    - score = frames * (motion + 1e-6) for plausible bodies; implausible ones get the same score minus 1e12,
      so they rank after every plausible body but are still ordered among themselves.
    """
    n_f = sk.num_frames
    scores = np.zeros((sk.num_bodies,), np.float64)
    for b in range(sk.num_bodies):
        pres = sk.present[:, b]
        frames = int(pres.sum())
        if frames == 0:
            scores[b] = -np.inf
            continue
        xyz = sk.joints_xyz[pres, b].astype(np.float64)  # (frames, 25, 3)
        motion = float(xyz.var(axis=0).sum()) if frames > 1 else 0.0
        x_spread = xyz[..., 0].max(axis=1) - xyz[..., 0].min(axis=1)
        y_spread = xyz[..., 1].max(axis=1) - xyz[..., 1].min(axis=1)
        upright = float(np.mean(x_spread <= max_spread_ratio * y_spread))
        plausible = frames >= min(min_frames, n_f) and upright >= 0.5
        scores[b] = frames * (motion + 1e-6) - (0.0 if plausible else 1e12)
    return scores


def select_actors(sk: Skeleton, n: int = 1, **score_kwargs: float) -> np.ndarray:
    """Indices (into the body axis) of the ``n`` main actors, best first: (min(n, Bd),) int64.

    ``n=1`` for single-person actions, 2 for interactions. Fewer than ``n`` indices come back when the file
    has fewer bodies (0-body files give an empty array). See :func:`actor_scores` for the rule.
    """
    if n < 1:
        raise ValueError(f"select_actors: n must be >= 1, got {n}")
    scores = actor_scores(sk, **score_kwargs)  # type: ignore[arg-type]
    valid = np.flatnonzero(np.isfinite(scores))
    order = valid[np.argsort(-scores[valid], kind="stable")]
    return order[:n].astype(np.int64)
