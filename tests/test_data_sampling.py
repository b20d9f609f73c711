"""Frame sampling and the shared flip."""

from __future__ import annotations

import numpy as np
import pytest

from modistill.data import flip_arrays, maybe_flip, sample_indices


def test_even_exact_values():
    # centres of 5 segments of 103 frames: floor((i + .5) * 103 / 5) = 10.3, 30.9, 51.5, 72.1, 92.7
    np.testing.assert_array_equal(sample_indices(103, 5, "even"), [10, 30, 51, 72, 92])
    np.testing.assert_array_equal(sample_indices(10, 5, "even"), [1, 3, 5, 7, 9])
    np.testing.assert_array_equal(sample_indices(3, 5, "even"), [0, 0, 1, 2, 2])  # short video: repeats
    np.testing.assert_array_equal(sample_indices(1, 3, "even"), [0, 0, 0])
    # the released code's uniform sampler: int(linspace(0, N - 1, k))
    np.testing.assert_array_equal(sample_indices(103, 5, "linspace"), [0, 25, 51, 76, 102])


@pytest.mark.parametrize("mode", ["even", "train", "random", "linspace"])
@pytest.mark.parametrize("n", [1, 2, 4, 5, 6, 37, 103, 300])
def test_properties(mode, n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        idx = sample_indices(n, 5, mode, rng)
        assert idx.shape == (5,) and idx.dtype == np.int64
        assert (np.diff(idx) >= 0).all() and idx.min() >= 0 and idx.max() < n
        if n >= 5 and mode in ("even", "random", "linspace"):
            assert len(set(idx.tolist())) == 5  # distinct whenever possible
        if n < 5 and mode == "random":
            assert set(idx.tolist()) == set(range(n))  # short videos use every frame


def test_train_mode_mixes_even_and_random_half_and_half():
    rng = np.random.default_rng(0)
    even = sample_indices(103, 5, "even")
    draws = [sample_indices(103, 5, "train", rng) for _ in range(400)]
    n_even = sum(np.array_equal(d, even) for d in draws)
    assert 160 <= n_even <= 240  # p = 0.5 (random draws equal to `even` are vanishingly rare)
    assert len({tuple(d) for d in draws}) > 150
    # reproducible with the same seed
    a = [sample_indices(50, 5, "train", np.random.default_rng(7)) for _ in range(3)]
    assert all(np.array_equal(a[0], x) for x in a)


def test_sampling_errors():
    with pytest.raises(ValueError, match="needs an rng"):
        sample_indices(10, 5, "train")
    with pytest.raises(ValueError, match="unknown mode"):
        sample_indices(10, 5, "uniform")
    with pytest.raises(ValueError, match="at least one frame"):
        sample_indices(0, 5)


def _sample(T=2, H=3, W=4):
    rgb = np.arange(T * H * W * 3, dtype=np.uint8).reshape(T, H, W, 3)
    depth = (np.arange(T * H * W * 3, dtype=np.uint8).reshape(T, H, W, 3) * 2) % 251
    flow = np.stack([np.full((T, H, W), 10, np.uint8), np.full((T, H, W), 200, np.uint8)], -1)
    flow[:, :, 0, 0] = 0
    return {"rgb": rgb, "depth": depth, "flow": flow}


def test_flip_arrays_and_flow_sign():
    s = _sample()
    out = flip_arrays(s, flow_keys=("flow",))
    np.testing.assert_array_equal(out["rgb"], s["rgb"][:, :, ::-1])
    np.testing.assert_array_equal(out["depth"], s["depth"][:, :, ::-1])
    # uint8 flow (f + 20) / 40 * 255: x component v -> 255 - v, y untouched
    assert (out["flow"][:, :, -1, 0] == 255).all() and (out["flow"][:, :, :-1, 0] == 245).all()
    assert (out["flow"][..., 1] == 200).all()
    f = np.random.default_rng(0).normal(size=(2, 2, 3, 5)).astype(np.float32)  # TCHW float flow
    o = flip_arrays({"flow": f}, ("flow",), layout="TCHW")["flow"]
    np.testing.assert_array_equal(o[:, 0], -f[:, 0, :, ::-1])
    np.testing.assert_array_equal(o[:, 1], f[:, 1, :, ::-1])
    np.testing.assert_array_equal(flip_arrays(out, ("flow",))["flow"], s["flow"])  # involution
    with pytest.raises(KeyError):
        flip_arrays(s, flow_keys=("optical",))


def test_maybe_flip_one_coin_for_all_modalities():
    s = _sample()
    flipped = kept = 0
    rng = np.random.default_rng(0)
    for _ in range(200):
        out = maybe_flip(s, rng, p=0.5)
        f_rgb = np.array_equal(out["rgb"], s["rgb"][:, :, ::-1])
        f_depth = np.array_equal(out["depth"], s["depth"][:, :, ::-1])
        assert f_rgb == f_depth  # never one modality without the other
        flipped += f_rgb
        kept += np.array_equal(out["rgb"], s["rgb"])
    assert flipped + kept == 200 and 70 < flipped < 130
    assert all(np.array_equal(maybe_flip(s, rng, p=0.0)["rgb"], s["rgb"]) for _ in range(5))
    assert all(np.array_equal(maybe_flip(s, rng, p=1.0)["rgb"], s["rgb"][:, :, ::-1]) for _ in range(5))


def test_flip_negates_every_x_component_of_stacked_flow():
    """Stacked flow [x1, y1, x2, y2] (L = 2): both x channels change sign, both y channels only move."""
    from modistill.data.sampling import flip_arrays

    flow = np.arange(1 * 2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4) + 1.0  # (T, H, W, 2L)
    out = flip_arrays({"flow": flow}, flow_keys=("flow",))["flow"]
    mirrored = flow[:, :, ::-1, :]
    np.testing.assert_array_equal(out[..., 0::2], -mirrored[..., 0::2])
    np.testing.assert_array_equal(out[..., 1::2], mirrored[..., 1::2])
    q = np.full((1, 2, 3, 4), 200, np.uint8)
    outq = flip_arrays({"flow": q}, flow_keys=("flow",))["flow"]
    assert (outq[..., 0::2] == 55).all() and (outq[..., 1::2] == 200).all()
