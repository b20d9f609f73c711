"""Input normalisation: the one definition used by the dataset, the robustness study and deployment.

Every stream is ImageNet-initialised in the paper (REF §3), so every 3-channel modality, jet-coloured depth
included, is normalised with the ImageNet statistics: ``(x / 255 - mean) / std`` per channel, no clipping
(REF §7 records an RGB stream that failed to learn after a clipped mean subtraction).

- `normalize_frames`: uint8 frames, channels last ``(..., H, W, C)`` (numpy or torch, as cached and decoded)
  -> float32 ``(..., C, H, W)``, normalised (dataset items, deployment clips).
- `normalize`: channels-first tensors ``(..., C, H, W)``, uint8 (0..255) or float images in [0, 1], on any
  device -> normalised (float32 for uint8 input, else the input's dtype).
- `denormalize`: the inverse, normalised -> float images in [0, 1] (the robustness study adds noise to depth
  in [0, 1] image space between `denormalize` and `normalize`).

The statistics are built as tensors of the input's dtype and device from the Python floats, so results are
bit-identical whichever of these entry points computed them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "denormalize", "normalize", "normalize_frames"]

# torchvision's ImageNet statistics (RGB order).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _stats(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> tuple[Tensor, Tensor]:
    if x.dim() < 3 or x.shape[-3] != len(mean) or len(mean) != len(std):
        raise ValueError(
            f"normalisation with {len(mean)} channel statistics needs (..., {len(mean)}, H, W) input, "
            f"got shape {tuple(x.shape)}"
        )
    shape = (1,) * (x.dim() - 3) + (-1, 1, 1)
    m = torch.tensor(tuple(mean), dtype=x.dtype, device=x.device).view(shape)
    s = torch.tensor(tuple(std), dtype=x.dtype, device=x.device).view(shape)
    return m, s


def normalize(
    x: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Tensor:
    """Images ``(..., C, H, W)`` -> ``(x - mean) / std`` per channel, on ``x``'s device.

    uint8 input is first converted to float32 ``x / 255``; float input is taken as intensities in [0, 1] and
    keeps its dtype.
    """
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    m, s = _stats(x, mean, std)
    return (x - m) / s


def denormalize(
    x: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Tensor:
    """Invert `normalize`: ``x * std + mean`` per channel -> images in [0, 1] ``(..., C, H, W)``."""
    m, s = _stats(x, mean, std)
    return x * s + m


def normalize_frames(
    frames: np.ndarray | Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Tensor:
    """uint8 frames ``(..., H, W, C)`` -> float32 ``(..., C, H, W)``: ``(frames / 255 - mean) / std``.

    A numpy array is wrapped without copying when it is contiguous; a tensor stays on its device.
    """
    t = frames if isinstance(frames, Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if t.dtype != torch.uint8:
        raise ValueError(f"normalize_frames expects uint8 frames (..., H, W, C), got {t.dtype}")
    return normalize(t.movedim(-1, -3), mean, std)
