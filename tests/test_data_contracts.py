"""One fact, one place, in modistill.data: the error hierarchy, the input normalisation and the crop rounding.

The reference implementations below are verbatim copies of the code each shared function replaced (the
dataset, the robustness study, deployment's preprocessing and crop box), so the shared functions are checked
to be *bit-identical* to what they replaced.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modistill.core.errors import ModistillError
from modistill.data import normalize as N
from modistill.data.actionfolders import LayoutError
from modistill.data.align import (
    NOMINAL_COLOR_SIZE,
    NOMINAL_DEPTH_SIZE,
    Alignment,
    AlignmentError,
    aligned_crop_geometry,
    pixel_box,
)
from modistill.data.cache import CacheError
from modistill.data.dataset import denormalize as dataset_denormalize
from modistill.data.depth import DepthReadError
from modistill.data.manifest import ManifestError
from modistill.data.prepare import PrepareError
from modistill.data.prepare_sample import SampleFailure
from modistill.data.skeleton import SkeletonFormatError
from modistill.data.video import VideoReadError

MEAN, STD = N.IMAGENET_MEAN, N.IMAGENET_STD


# --------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "cls,builtin",
    [
        (AlignmentError, ValueError),
        (DepthReadError, ValueError),
        (LayoutError, ValueError),
        (VideoReadError, ValueError),
        (ManifestError, ValueError),
        (SkeletonFormatError, ValueError),
        (CacheError, RuntimeError),
        (PrepareError, RuntimeError),
    ],
)
def test_data_errors_are_modistill_errors_and_keep_their_builtin_base(cls, builtin) -> None:
    assert issubclass(cls, ModistillError) and issubclass(cls, builtin)
    with pytest.raises(builtin):  # `except ValueError` / `except RuntimeError` in user code still works
        raise cls("x")


def test_sample_failure_is_a_modistill_error_with_its_stage() -> None:
    e = SampleFailure("rgb", "v.avi: cannot open video")
    assert isinstance(e, ModistillError) and e.stage == "rgb" and str(e) == "v.avi: cannot open video"


# ------------------------------------------------------------------------------------------- normalisation
def _old_dataset(a: np.ndarray) -> torch.Tensor:  # data/dataset.py before normalize_frames
    x = torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(list(MEAN)).view(1, -1, 1, 1)) / torch.tensor(list(STD)).view(1, -1, 1, 1)


def _old_deploy(small: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:  # deploy preprocess_frames
    x = torch.from_numpy(np.ascontiguousarray(small)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _old_robustness_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # robustness._stats
    shape = (1,) * (x.dim() - 3) + (3, 1, 1)
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(shape)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(shape)
    return mean, std


def _old_dataset_denormalize(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(list(MEAN)).view(1, -1, 1, 1), torch.tensor(list(STD)).view(1, -1, 1, 1)
    shape = (1,) * (x.dim() - 3) + (-1, 1, 1)
    return x * std.view(shape) + mean.view(shape)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_normalize_frames_is_bit_identical_to_the_dataset_and_deployment_code() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(5, 7, 9, 3), dtype=np.uint8)
    assert _same(N.normalize_frames(a), _old_dataset(a))
    assert _same(N.normalize_frames(a), _old_deploy(a))
    assert _same(N.normalize_frames(torch.from_numpy(a)), _old_dataset(a))  # tensors too
    # Deployment specs may carry other statistics.
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.3, 0.4)
    assert _same(N.normalize_frames(a, mean, std), _old_deploy(a, mean, std))
    # Non-contiguous input (a flipped clip) and a batch dimension.
    flipped = a[:, :, ::-1]
    assert _same(N.normalize_frames(flipped), _old_dataset(np.ascontiguousarray(flipped)))
    batch = rng.integers(0, 256, size=(2, 3, 4, 4, 3), dtype=np.uint8)
    assert _same(N.normalize_frames(batch)[1], _old_dataset(batch[1]))
    # uint8 channels-first tensors go through `normalize` directly.
    chw = torch.from_numpy(a).permute(0, 3, 1, 2)
    assert _same(N.normalize(chw), _old_dataset(a))


def test_normalize_frames_by_rows_equals_normalize_values_and_strides() -> None:
    """normalize_frames repeats the statistics along each (W * C) row (speed): the values and the strides
    (channels-last, what VideoStream expects) must be those of `normalize` on the channels-first view."""
    g = torch.Generator().manual_seed(1)
    for shape in [(8, 5, 64, 64, 3), (3, 7, 5, 3), (7, 5, 3)]:
        t = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        ref = N.normalize(t.movedim(-1, -3))
        got = N.normalize_frames(t)
        assert _same(got, ref) and got.stride() == ref.stride(), shape
    with pytest.raises(ValueError, match="channel statistics"):
        N.normalize_frames(torch.zeros(2, 4, 4, 2, dtype=torch.uint8))  # 2 channels, 3 statistics
    with pytest.raises(ValueError, match="channel statistics"):  # as many stds as means
        N.normalize_frames(torch.zeros(2, 4, 4, 3, dtype=torch.uint8), (0.5, 0.5, 0.5), (0.2, 0.2))
    with pytest.raises(ValueError, match="channel statistics"):
        N.normalize_frames(torch.zeros(4, 3, dtype=torch.uint8))  # no image


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_normalize_and_denormalize_are_bit_identical_to_the_robustness_study(dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 3, 5, 4, generator=g).to(dtype)  # normalised clips (B, T, 3, H, W)
    mean, std = _old_robustness_stats(x)
    img = x * std + mean
    assert _same(N.denormalize(x), img)
    noise = 1.0 + 0.3 * torch.randn(img.shape, generator=g).to(dtype)
    assert _same(N.normalize(img * noise), (img * noise - mean) / std)  # speckle_transform
    void = ((torch.zeros_like(x) - mean) / std).expand_as(x)
    assert _same(N.normalize(torch.zeros_like(x)), void)  # void_transform


def test_dataset_denormalize_is_unchanged_and_inverts() -> None:
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    assert _same(dataset_denormalize(x, "rgb"), _old_dataset_denormalize(x))
    a = np.random.default_rng(2).integers(0, 256, size=(3, 6, 6, 3), dtype=np.uint8)
    back = (N.denormalize(N.normalize_frames(a)) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(back, a)


def test_normalize_rejects_wrong_inputs() -> None:
    with pytest.raises(ValueError, match="3 channel statistics"):
        N.normalize(torch.zeros(2, 4, 5, 5))
    with pytest.raises(ValueError, match="uint8"):
        N.normalize_frames(np.zeros((2, 5, 5, 3), np.float32))


# --------------------------------------------------------------------------------------------- crop boxes
def _old_crop_box_pixels(box, hw, keep_aspect=False):  # deploy's crop_box_pixels before pixel_box
    H, W = int(hw[0]), int(hw[1])
    fx0, fy0, fx1, fy1 = (float(v) for v in box)
    x0, x1 = math.ceil(fx0 * W - 1e-6), math.floor(fx1 * W + 1e-6)
    y0, y1 = math.ceil(fy0 * H - 1e-6), math.floor(fy1 * H + 1e-6)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError("empty")
    if keep_aspect:
        side = min(x1 - x0, y1 - y0)
        x0 += (x1 - x0 - side) // 2
        y0 += (y1 - y0 - side) // 2
        x1, y1 = x0 + side, y0 + side
    return (x0, y0, x1, y1)


def _old_geometry_box(rgb_hw, depth_hw, a, keep_aspect):  # aligned_crop_geometry's box before pixel_box
    (H, W), (h, w) = rgb_hw, depth_hw
    (cw, ch), (dw, dh) = NOMINAL_COLOR_SIZE, NOMINAL_DEPTH_SIZE
    s = a.scale
    ax, bx = (W / cw) * s * (dw / w), (W / cw) * (a.tx + 0.5 - 0.5 * s)
    ay, by = (H / ch) * s * (dh / h), (H / ch) * (a.ty + 0.5 - 0.5 * s)
    X0, X1 = max(0.0, bx), min(float(W), bx + ax * w)
    Y0, Y1 = max(0.0, by), min(float(H), by + ay * h)
    x0, x1 = math.ceil(X0 - 1e-6), math.floor(X1 + 1e-6)
    y0, y1 = math.ceil(Y0 - 1e-6), math.floor(Y1 + 1e-6)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    if keep_aspect:
        side = min(x1 - x0, y1 - y0)
        x0 += (x1 - x0 - side) // 2
        y0 += (y1 - y0 - side) // 2
        x1, y1 = x0 + side, y0 + side
    return (x0, y0, x1, y1), (X0, Y0, X1, Y1)


_frac = st.floats(-0.2, 1.2, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(_frac, _frac, _frac, _frac, st.integers(1, 2000), st.integers(1, 2000), st.booleans())
def test_pixel_box_equals_deployments_crop_box(fx0, fy0, fx1, fy1, H, W, keep) -> None:
    box = (fx0, fy0, fx1, fy1)
    try:
        want = _old_crop_box_pixels(box, (H, W), keep)
    except ValueError:
        with pytest.raises(AlignmentError, match="empty"):
            pixel_box((fx0 * W, fy0 * H, fx1 * W, fy1 * H), (H, W), keep)
        return
    assert pixel_box((fx0 * W, fy0 * H, fx1 * W, fy1 * H), (H, W), keep) == want


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.5, 4.0),
    st.floats(-800, 1800),
    st.floats(-600, 1000),
    st.sampled_from([(1080, 1920), (540, 960), (180, 320), (101, 203), (1080, 1440)]),
    st.sampled_from([(424, 512), (212, 256), (106, 128)]),
    st.booleans(),
)
def test_aligned_crop_geometry_box_is_unchanged(scale, tx, ty, rgb_hw, depth_hw, keep) -> None:
    a = Alignment(scale=scale, tx=tx, ty=ty)
    old = _old_geometry_box(rgb_hw, depth_hw, a, keep)
    if old is None:
        with pytest.raises(AlignmentError, match="does not overlap"):
            aligned_crop_geometry(rgb_hw, depth_hw, a, keep_aspect=keep)
        return
    g = aligned_crop_geometry(rgb_hw, depth_hw, a, keep_aspect=keep)
    assert g.rgb_box == old[0] and g.intersection == old[1]


def test_pixel_box_squares_the_centre() -> None:
    assert pixel_box((0.0, 0.0, 160.0, 90.0), (90, 160)) == (0, 0, 160, 90)
    assert pixel_box((0.0, 0.0, 160.0, 90.0), (90, 160), keep_aspect=True) == (35, 0, 125, 90)
    # x: ceil(10.4) = 11 .. floor(20.0000001) = 20 (9 px), y: 0 .. 7 (clamped, 7 px); square side 7, centred.
    assert pixel_box((10.4, -3.0, 20.0000001, 7.9), (8, 30), keep_aspect=True) == (12, 0, 19, 7)
