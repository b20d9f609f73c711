"""Tiny models and datasets for the engine tests (used by tests/test_engine_*.py and the DDP worker).

The learnable problem: each class has a fixed random frame pattern; a clip `(T, C, H, W)` is that pattern plus
Gaussian noise, so a linear frame classifier averaged over time (the video-logit rule of REF §1) separates it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


class ToyClips(Dataset):
    """`n` clips of shape (T, C, H, W) with labels in [0, K); optional on-the-fly noise from the global RNG
    (so the trainer's seeding is what makes it reproducible)."""

    def __init__(
        self,
        n: int = 32,
        k: int = 3,
        t: int = 2,
        c: int = 3,
        h: int = 4,
        w: int = 4,
        noise: float = 0.5,
        augment: float = 0.0,
        seed: int = 0,
    ) -> None:
        g = torch.Generator().manual_seed(1234)  # class patterns shared by every split
        self.patterns = torch.randn(k, c, h, w, generator=g)
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % k
        self.clips = self.patterns[self.labels][:, None].expand(n, t, c, h, w).clone()
        self.clips += noise * torch.randn(n, t, c, h, w, generator=g)
        self.augment = augment
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        rgb = self.clips[i]
        if self.augment:
            rgb = rgb + self.augment * torch.randn(rgb.shape)
        return {"rgb": rgb, "label": self.labels[i], "index": torch.tensor(i)}


class ToyNet(nn.Module):
    """Frame-wise MLP: (B, T, C, H, W) -> frame logits (B, T, K) -> video logits (B, K) = mean over T."""

    def __init__(self, k: int = 3, c: int = 3, h: int = 4, w: int = 4, hidden: int = 16, p_drop: float = 0.0):
        super().__init__()
        self.body = nn.Linear(c * h * w, hidden)
        self.drop = nn.Dropout(p_drop)
        self.head = nn.Linear(hidden, k)
        # A frozen branch that still takes part in the forward pass (like the frozen depth stream of step 3).
        self.frozen = nn.Linear(c * h * w, k)
        self.frozen.requires_grad_(False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        b, t = rgb.shape[:2]
        x = rgb.reshape(b * t, -1)
        frame = self.head(self.drop(F.relu(self.body(x)))) + 0.1 * self.frozen(x)
        return frame.reshape(b, t, -1).mean(dim=1)


def ce_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = model(batch["rgb"])
    loss = F.cross_entropy(logits.float(), batch["label"])
    return loss, {"ce": loss.detach(), "const": 1.0}


def predict(model: nn.Module, batch: dict) -> torch.Tensor:
    return model(batch["rgb"])


def state_equal(a: dict, b: dict) -> list[str]:
    """Keys whose tensors differ (empty list = bit-identical)."""
    assert set(a) == set(b), set(a) ^ set(b)
    return [k for k in a if not torch.equal(a[k], b[k])]
