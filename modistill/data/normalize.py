"""Input normalisation shared by the dataset, the robustness study and deployment (predict / export).

Every stream is ImageNet-initialised in the paper (REF §3), so every 3-channel modality, jet-coloured depth
included, is normalised with the ImageNet statistics: ``(x / 255 - mean) / std`` per channel, no clipping
(REF §7 records an RGB stream that failed to learn after a clipped mean subtraction).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalize_frames"]

# torchvision's ImageNet statistics (RGB order).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize_frames(frames: np.ndarray | Tensor) -> Tensor:
    """uint8 frames ``(T, H, W, 3)`` -> float32 ``(T, 3, H, W)``, ImageNet-normalised."""
    x = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std
