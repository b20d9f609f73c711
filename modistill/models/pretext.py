"""The pretext network of the stand-in for ImageNet initialisation (docs/pretrain.md): a ResNet trunk with a

dense body-part head and a joint regressor, and the pretext loss as a plain tensor function.

The trunk is exactly the backbone a benchmark stream uses (same depth, width, torchvision key names), so after
pretraining its ``state_dict`` is a checkpoint :func:`~modistill.models.pretrained.load_pretrained` accepts like an
ImageNet one. The trunk's own ``fc`` classifies where each joint is (25 joints x an 8 x 8 grid of cells = 1600
outputs, on the pooled last-stage features the action classifier will read); like ImageNet's 1000-way ``fc`` it has
another class count than the benchmark, so loading re-initialises it. The part head reads all four stages (a small
feature pyramid: 1x1 projections, upsampled and summed) and is discarded after pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ModelConfigError
from .resnet import ResNet

__all__ = ["PretextNet", "PretextOutput", "pretext_loss", "balanced_part_weights", "joint_cells", "NUM_JOINTS"]

NUM_JOINTS = 25


@dataclass
class PretextOutput:
    """``parts`` (N, P, L, L) part logits at the label resolution; ``joint_logits`` (N, 25, G*G) logits of the
    cell of a G x G grid over the crop that holds each joint."""

    parts: Tensor
    joint_logits: Tensor

    def joints(self) -> Tensor:
        """(N, 25, 2) expected joint positions in crop units (softmax-weighted cell centres)."""
        g = int(round(self.joint_logits.shape[-1] ** 0.5))
        c = (torch.arange(g, device=self.joint_logits.device, dtype=self.joint_logits.dtype) + 0.5) / g
        prob = self.joint_logits.softmax(-1).view(*self.joint_logits.shape[:2], g, g)  # (N, J, row y, col x)
        return torch.stack([(prob.sum(-2) * c).sum(-1), (prob.sum(-1) * c).sum(-1)], -1)


class PretextNet(nn.Module):
    """``trunk`` (a :class:`ResNet` with ``num_classes = 25 * grid**2``) plus a part head.

    Input ``(N, 3, H, W)`` normalised frames; output :class:`PretextOutput` with part logits at
    ``label_size x label_size`` and, from the trunk's own ``fc`` on its pooled features, each joint's cell.
    Why joints as a classification and not a regression: regressing coordinates in [0, 1] left the pooled
    features with a tiny spread across frames (std 0.04 against 0.47 at random initialisation, measured on
    the demo's frames), so a new classifier on them learns slowly and fine-tuning reshapes the trunk instead;
    a cross-entropy head, like ImageNet's, keeps them well scaled for the next classifier (docs/pretrain.md).
    """

    def __init__(
        self, trunk: ResNet, num_parts: int, label_size: int, grid: int = 8, head_channels: int = 32
    ) -> None:
        super().__init__()
        if trunk.fc.out_features != NUM_JOINTS * grid * grid:
            raise ModelConfigError(f"the trunk's fc must have {NUM_JOINTS * grid * grid} outputs (25 joints x "
                             f"{grid}x{grid} cells), got {trunk.fc}")
        self.trunk = trunk
        self.grid = int(grid)
        self.label_size = int(label_size)
        self.lateral = nn.ModuleList(nn.Conv2d(c, head_channels, 1) for c in trunk.stage_channels())
        self.head = nn.Sequential(
            nn.Conv2d(head_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(head_channels, num_parts, 1),
        )

    def forward(self, x: Tensor) -> PretextOutput:
        t = self.trunk
        h = t.stem(x)
        size = None
        fused: Tensor | None = None
        for stage, lat in zip(t.stages(), self.lateral):
            h = stage(h)
            p = lat(h)
            if fused is None:
                fused, size = p, p.shape[-2:]
            else:  # coarser stages are upsampled onto layer1's grid (a minimal feature pyramid)
                fused = fused + F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        assert fused is not None
        parts = self.head(fused)
        if parts.shape[-1] != self.label_size:
            parts = F.interpolate(parts, size=(self.label_size, self.label_size), mode="bilinear",
                                  align_corners=False)
        return PretextOutput(parts=parts, joint_logits=t.fc(t.pool(h)).view(-1, NUM_JOINTS, self.grid ** 2))


def joint_cells(joints: Tensor, grid: int) -> Tensor:
    """(N, 25, 2) positions in crop units -> (N, 25) int64 index ``row * grid + col`` of their grid cell
    (positions outside the crop fall into the border cells)."""
    ij = (joints * grid).floor().clamp(0, grid - 1).long()
    return ij[..., 1] * grid + ij[..., 0]


def pretext_loss(
    out: PretextOutput, parts: Tensor, joints: Tensor, joint_weight: float = 1.0,
    part_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-pixel cross-entropy of the part map plus ``joint_weight`` x the cross-entropy of each joint's cell.

    ``parts`` (N, L, L) int64 part indices (0 = background); ``joints`` (N, 25, 2) positions in crop units.
    ``part_weights`` (P,) weigh each part's pixels in the cross-entropy (a weighted mean, as
    ``F.cross_entropy(weight=...)``): the body covers a few percent of the frame and a forearm a few pixels, so
    unweighted the loss is mostly background and torso (see :func:`balanced_part_weights`). Returns
    ``(total, {"parts": ..., "joints": ...})``.
    """
    w = None if part_weights is None else part_weights.to(out.parts.device, out.parts.dtype)
    l_parts = F.cross_entropy(out.parts, parts, weight=w)
    g = int(round(out.joint_logits.shape[-1] ** 0.5))
    l_joints = F.cross_entropy(out.joint_logits.flatten(0, 1), joint_cells(joints, g).flatten())
    return l_parts + joint_weight * l_joints, {"parts": l_parts.detach(), "joints": l_joints.detach()}


def balanced_part_weights(parts: Tensor, num_parts: int, power: float) -> Tensor:
    """Class weights ``(median frequency / frequency) ** power`` from label maps ``parts`` (any shape, int):
    median-frequency balancing (Eigen & Fergus, ICCV 2015) softened by ``power`` (0: all ones; 1: the full
    balance). Parts that never occur get weight 1."""
    counts = torch.bincount(parts.reshape(-1).long(), minlength=num_parts).double()
    freq = counts / counts.sum()
    present = counts > 0
    w = torch.ones(num_parts, dtype=torch.float64)
    w[present] = (freq[present].median() / freq[present]) ** power
    return w.float()
