"""The depth-noise transforms of the robustness study (Garcia et al. 2018 Table 3, REF §3-4): multiplicative
speckle I * n in image space, each level v of the table read as the std of n ~ N(1, v) (the released code's
reading, the default) or as its variance (the paper's column header), saturated to [0, 1] by default (the
released code) or not; and void depth (a black image)."""

from __future__ import annotations

import math

import pytest
import torch

from modistill.core.paper import NOISE_SIGMA2
from modistill.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from modistill.pipeline.robustness import noise_std, speckle_transform, void_transform

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _normalised(img: torch.Tensor) -> torch.Tensor:
    return (img - MEAN) / STD


def _image(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


def _batch(shape=(2, 3, 3, 8, 8), seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = 0.2 + 0.8 * torch.rand(shape, generator=g)  # intensities in [0.2, 1]: ratios below are well defined
    return {"depth": _normalised(img), "rgb": torch.randn(shape, generator=g)}


def test_paper_noise_levels():
    assert NOISE_SIGMA2 == (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def test_speckle_sigma0_is_the_identity():
    b = _batch()
    out = speckle_transform("depth", 0.0, seed=3)(b)
    assert torch.equal(out["depth"], b["depth"]) and torch.equal(out["rgb"], b["rgb"])


def test_void_gives_black_images_in_image_space():
    b = _batch()
    out = void_transform("depth")(b)
    assert out["depth"].shape == b["depth"].shape
    torch.testing.assert_close(_image(out["depth"]), torch.zeros_like(b["depth"]), atol=1e-6, rtol=0)
    # The normalised value of black is -mean/std per channel (ImageNet statistics, docs/ARCHITECTURE.md).
    torch.testing.assert_close(out["depth"][0, 0, :, 0, 0], -MEAN.flatten() / STD.flatten())
    assert torch.equal(out["rgb"], b["rgb"])  # only the named input changes


def _factors(b, out) -> torch.Tensor:
    return (_image(out["depth"]) / _image(b["depth"])).flatten().double()  # the multiplicative factor per pixel


@pytest.mark.parametrize("sigma2", [1e-2, 1.0])
def test_speckle_variance_reading_statistics_in_image_space(sigma2):
    b = _batch(shape=(4, 4, 3, 48, 48))  # 110592 pixels
    out = speckle_transform("depth", sigma2, seed=1, reading="variance", clip=False)(b)
    n = _factors(b, out)
    count = n.numel()
    sigma = math.sqrt(sigma2)
    # Five standard errors: of the mean sigma / sqrt(N), of the variance about sigma^2 * sqrt(2 / N).
    assert abs(float(n.mean()) - 1.0) < 5 * sigma / math.sqrt(count)
    assert abs(float(n.var()) - sigma2) < 5 * sigma2 * math.sqrt(2 / count)
    # Gaussian, not e.g. uniform: about 68.3 % of the factors lie within one sigma of 1.
    within = float(((n - 1).abs() < sigma).double().mean())
    assert abs(within - 0.6827) < 0.01
    assert torch.equal(out["rgb"], b["rgb"])


def test_default_reading_is_the_released_codes_std():
    """The released code passes the table's value v as the standard deviation of n ~ N(1, v) (REF §3): at
    v = 1e-2 the factors spread by 0.01, not by sqrt(0.01) = 0.1 (the variance reading)."""
    assert noise_std(1e-2) == 1e-2 and noise_std(1e-2, "variance") == pytest.approx(0.1)
    b = _batch(shape=(4, 4, 3, 48, 48))
    n = _factors(b, speckle_transform("depth", 1e-2, seed=1)(b))  # defaults: std reading, clipped
    assert abs(float(n.std()) - 0.01) < 0.0005
    with pytest.raises(ValueError, match="reading"):
        noise_std(1.0, "sigma")


def test_default_saturates_to_the_valid_range():
    b = _batch(shape=(2, 2, 3, 16, 16))
    img = _image(speckle_transform("depth", 10.0, seed=5)(b)["depth"])
    assert float(img.min()) >= -1e-6 and float(img.max()) <= 1 + 1e-6
    assert float((img < 1e-6).double().mean()) > 0.3  # v = 10 sends many pixels below 0: saturated to 0
    raw = _image(speckle_transform("depth", 10.0, seed=5, clip=False)(b)["depth"])
    assert float(raw.min()) < 0 and float(raw.max()) > 1  # the paper's formula alone has no clipping
    torch.testing.assert_close(img, raw.clamp(0, 1), atol=1e-5, rtol=0)


def test_speckle_is_seeded():
    b = _batch(shape=(2, 2, 3, 16, 16))
    a1 = speckle_transform("depth", 10.0, seed=5)(b)["depth"]
    a2 = speckle_transform("depth", 10.0, seed=5)(b)["depth"]
    a3 = speckle_transform("depth", 10.0, seed=6)(b)["depth"]
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    # One transform draws fresh noise for each batch (it is a stream, not a fixed mask).
    t = speckle_transform("depth", 1.0, seed=5)
    assert not torch.equal(t(b)["depth"], t(b)["depth"])


def test_negative_level_is_an_error():
    with pytest.raises(ValueError, match="sigma"):
        speckle_transform("depth", -1.0)
