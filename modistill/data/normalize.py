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
- `normalize_flow_frames`: quantised optical flow, uint8 ``(..., H, W, 2L)`` -> float32 ``(..., 2L, H, W)``
  in [-1, 1] (`flow.flow_to_tensor` and the batch path below).
- `BatchNormalizer`: the same functions applied to a whole collated batch of uint8 frames on the training
  device (`CachedClipDataset(output="uint8")`): batches cross to the GPU as uint8, a quarter of the bytes,
  and the host does no float work.

The statistics are built as tensors of the input's dtype and device from the Python floats, so results are
bit-identical whichever of these entry points computed them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BatchNormalizer",
    "denormalize",
    "normalize",
    "normalize_flow_frames",
    "normalize_frames",
]

# torchvision's ImageNet statistics (RGB order).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _stats(
    x: Tensor, mean: Sequence[float], std: Sequence[float], channels_last: bool = False
) -> tuple[Tensor, Tensor]:
    """(mean, std) as tensors that broadcast against ``x`` ``(..., C, H, W)``; with ``channels_last``, ``x`` is
    ``(..., H, W, C)`` and they come repeated along a row of W pixels, ``(W * C,)`` (see `normalize_frames`)."""
    dim = -1 if channels_last else -3
    if x.dim() < 3 or x.shape[dim] != len(mean) or len(mean) != len(std):
        want = f"(..., H, W, {len(mean)})" if channels_last else f"(..., {len(mean)}, H, W)"
        raise ValueError(
            f"normalisation with {len(mean)} channel statistics needs {want} input, got shape {tuple(x.shape)}"
        )
    m = torch.tensor(tuple(mean), dtype=x.dtype, device=x.device)
    s = torch.tensor(tuple(std), dtype=x.dtype, device=x.device)
    if channels_last:
        return m.repeat(x.shape[-2]), s.repeat(x.shape[-2])
    shape = (1,) * (x.dim() - 3) + (-1, 1, 1)
    return m.view(shape), s.view(shape)


def _unit(x: Tensor) -> Tensor:
    """uint8 -> float32 ``x / 255``; float input (intensities in [0, 1]) unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def normalize(
    x: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Tensor:
    """Images ``(..., C, H, W)`` -> ``(x - mean) / std`` per channel, on ``x``'s device.

    uint8 input is first converted to float32 ``x / 255``; float input is taken as intensities in [0, 1] and
    keeps its dtype.
    """
    x = _unit(x)
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
    # The operations of `normalize` (x / 255, - mean, / std: the same values bit for bit, and the same strides)
    # with the statistics repeated along each (W * C) row: broadcasting a 3-element channel axis over the
    # innermost dimension ran about 4x slower on CPU (1.0-1.5 against 0.25 ms for a batch of 8 x 5 frames of
    # 64 x 64; tests/test_data_contracts.py checks the equality).
    x = _unit(t.contiguous())
    m, s = _stats(x, mean, std, channels_last=True)
    rows = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
    return ((rows - m) / s).reshape(x.shape).movedim(-1, -3)


def normalize_flow_frames(frames: Tensor) -> Tensor:
    """Quantised flow, uint8 ``(..., H, W, 2L)`` -> float32 ``(..., 2L, H, W)`` = ``(q - 127.5) / 127.5``.

    That is the dequantised flow divided by its bound b, ``(q / 255 * 2b - b) / b``, so it does not depend on
    b; centred first so that a uint8 flip (255 - q) is an exact negation (see `flow.dequantize_flow`).
    """
    if frames.dtype != torch.uint8 or frames.dim() < 3 or frames.shape[-1] % 2:
        raise ValueError(
            f"flow frames must be uint8 (..., H, W, 2L), got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames.movedim(-1, -3).float().sub_(127.5).div_(127.5)


@dataclass(frozen=True)
class BatchNormalizer:
    """Normalise the uint8 frames of a collated batch where the batch is (on the training device).

    ``images``: ``(key, mean, std)`` per image modality; ``flows``: keys of quantised-flow modalities. Called on
    a batch dict, it returns a new dict in which each listed key holding uint8 frames ``(..., H, W, C)`` (e.g.
    ``(B, T, S, S, 3)``, or ``(B, N, T, S, S, 3)`` with N clips per video) is replaced by the float32
    ``(..., C, H, W)`` that `normalize_frames` / `normalize_flow_frames` give, bit for bit the values the host
    computes for one item (same functions, element-wise operations; on CUDA the division by 255 may round
    differently in the last bit). Other entries pass through. Picklable (a frozen dataclass of tuples).
    """

    images: tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...] = ()
    flows: tuple[str, ...] = ()

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        for key, mean, std in self.images:
            if key in out and isinstance(out[key], Tensor) and out[key].dtype == torch.uint8:
                out[key] = normalize_frames(out[key], mean, std)
        for key in self.flows:
            if key in out and isinstance(out[key], Tensor) and out[key].dtype == torch.uint8:
                out[key] = normalize_flow_frames(out[key])
        return out
