"""Frame sampling and the shared horizontal flip.

REF §3/§4: 5 evenly spaced frames per video for training and test; the official training code mixes evenly
spaced and sorted random frames; one horizontal flip decision (p = 0.5) shared by all modalities of a sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["SAMPLING_MODES", "sample_indices", "flip_arrays", "maybe_flip"]

SAMPLING_MODES = ("even", "train", "random", "linspace")


def _even(num_frames: int, k: int) -> np.ndarray:
    # Centre of each of k equal segments of [0, num_frames): floor((i + 0.5) * N / k); for N < k the floor
    # repeats frames, which keeps the result sorted and every frame used.
    return np.floor((np.arange(k) + 0.5) * num_frames / k).astype(np.int64)


def _random(num_frames: int, k: int, rng: np.random.Generator) -> np.ndarray:
    if num_frames >= k:
        return np.sort(rng.choice(num_frames, size=k, replace=False)).astype(np.int64)
    # Too short: every frame once, the rest drawn with repetition, sorted.
    extra = rng.choice(num_frames, size=k - num_frames, replace=True)
    return np.sort(np.concatenate([np.arange(num_frames), extra])).astype(np.int64)


def sample_indices(
    num_frames: int,
    k: int = 5,
    mode: str = "even",
    rng: np.random.Generator | None = None,
    *,
    p_even: float = 0.5,
) -> np.ndarray:
    """``k`` sorted frame indices in ``[0, num_frames)``: ``(k,)`` int64; the same serve every modality.

    Modes:
    - ``"even"``: the centres of ``k`` equal segments, ``floor((i + 0.5) * N / k)``; deterministic (the
      paper's test-time sampling, supplement §2). N=103, k=5 gives [10, 30, 51, 72, 92].
    - ``"train"``: our reading of the released training code (``codebase/parsers.py``, REF §3/§4 "half and
      half"): per clip, a coin flip with probability ``p_even`` picks the ``"even"`` indices, otherwise
      ``"random"`` ones; so over an epoch half the clips are evenly spaced and half sorted random.
    - ``"random"``: ``k`` distinct frames drawn uniformly, sorted.
    - ``"linspace"``: the released code's uniform sampler, ``int(linspace(0, N - 1, k))`` (includes the first
      and last frame; offered for parity).
    ``num_frames < k`` repeats frames (sorted, no error); ``num_frames < 1`` is an error.
    """
    num_frames, k = int(num_frames), int(k)
    if num_frames < 1:
        raise ValueError(f"sample_indices: need at least one frame, got num_frames={num_frames}")
    if k < 1:
        raise ValueError(f"sample_indices: k must be >= 1, got {k}")
    if mode == "even":
        return _even(num_frames, k)
    if mode == "linspace":
        return np.linspace(0.0, num_frames - 1, k).astype(np.int64)
    if mode not in ("train", "random"):
        raise ValueError(f"sample_indices: unknown mode {mode!r}; choose one of {', '.join(SAMPLING_MODES)}")
    if rng is None:
        raise ValueError(f"sample_indices: mode {mode!r} needs an rng (np.random.Generator)")
    if mode == "train" and rng.random() < p_even:
        return _even(num_frames, k)
    return _random(num_frames, k, rng)


def flip_arrays(
    arrays: Mapping[str, np.ndarray], flow_keys: Iterable[str] = (), *, layout: str = "THWC"
) -> dict[str, np.ndarray]:
    """Flip every array horizontally (the W axis of ``layout``, "THWC" or "TCHW"; "HWC"/"CHW" also work).

    For ``flow_keys`` the x displacements change sign too (REF §6): channels 0, 2, 4, ... of flow stacked as
    ``[x1, y1, x2, y2, ...]`` (modistill.data.flow); float flow is negated; uint8 flow quantised as
    ``(f + 20) / 40 * 255`` maps ``v -> 255 - v``.
    """
    if layout not in ("THWC", "TCHW", "HWC", "CHW"):
        raise ValueError(f"flip_arrays: unknown layout {layout!r}")
    w_axis = layout.index("W")
    c_axis = layout.index("C")
    flow = set(flow_keys)
    unknown = flow - set(arrays)
    if unknown:
        raise KeyError(f"flip_arrays: flow keys {sorted(unknown)} are not among the arrays {sorted(arrays)}")
    out: dict[str, np.ndarray] = {}
    for key, a in arrays.items():
        a = np.asarray(a)
        f = np.flip(a, axis=w_axis).copy()
        if key in flow:
            sl = [slice(None)] * f.ndim
            sl[c_axis] = slice(0, None, 2)  # every x component of a stack of L flow fields
            x = f[tuple(sl)]
            if f.dtype == np.uint8:
                f[tuple(sl)] = 255 - x
            elif np.issubdtype(f.dtype, np.unsignedinteger):
                raise TypeError(f"flip_arrays: cannot negate flow {key!r} stored as {f.dtype}")
            else:
                f[tuple(sl)] = -x
        out[key] = f
    return out


def maybe_flip(
    arrays: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    p: float = 0.5,
    flow_keys: Iterable[str] = (),
    *,
    layout: str = "THWC",
) -> dict[str, np.ndarray]:
    """With probability ``p`` flip all arrays of one sample horizontally (one coin flip shared by every
    modality so they stay aligned); otherwise return them unchanged (same objects, in a new dict)."""
    if rng.random() < p:
        return flip_arrays(arrays, flow_keys, layout=layout)
    return dict(arrays)
