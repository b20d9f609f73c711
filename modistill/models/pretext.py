"""The pretext network of the stand-in for ImageNet initialisation (docs/pretrain.md): a ResNet trunk with a
dense body-part head and a joint regressor, and the pretext loss as a plain tensor function.

The trunk is exactly the backbone a benchmark stream uses (same depth, width, torchvision key names), so after
pretraining its ``state_dict`` is a checkpoint :func:`~modistill.models.pretrained.load_pretrained` accepts
like an ImageNet one. The trunk's own ``fc`` is the joint regressor (25 joints x (x, y) = 50 outputs, on the
pooled last-stage features the action classifier will read); like ImageNet's 1000-way ``fc`` it has another
class count than the benchmark, so loading re-initialises it. The part head reads all four stages (a small
feature pyramid: 1x1 projections, upsampled and summed) and is discarded after pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .resnet import ResNet

__all__ = ["PretextNet", "PretextOutput", "pretext_loss", "NUM_JOINTS"]

NUM_JOINTS = 25


@dataclass
class PretextOutput:
    """``parts`` (N, P, L, L) part logits at the label resolution; ``joints`` (N, 25, 2) in crop units
    ([0, 1] inside the crop)."""

    parts: Tensor
    joints: Tensor


class PretextNet(nn.Module):
    """``trunk`` (a :class:`ResNet` with ``num_classes = 2 * NUM_JOINTS``) plus a part head.

    Input ``(N, 3, H, W)`` normalised frames; output :class:`PretextOutput` with part logits at
    ``label_size x label_size``.
    """

    def __init__(self, trunk: ResNet, num_parts: int, label_size: int, head_channels: int = 32) -> None:
        super().__init__()
        if trunk.fc.out_features != 2 * NUM_JOINTS:
            raise ValueError(f"the trunk's fc must have {2 * NUM_JOINTS} outputs (the joints), got {trunk.fc}")
        self.trunk = trunk
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
        joints = t.fc(t.pool(h)).view(-1, NUM_JOINTS, 2)
        return PretextOutput(parts=parts, joints=joints)


def pretext_loss(
    out: PretextOutput, parts: Tensor, joints: Tensor, joint_weight: float = 1.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-pixel cross-entropy of the part map plus ``joint_weight`` x the joints' smooth-L1 error.

    ``parts`` (N, L, L) int64 part indices; ``joints`` (N, 25, 2) targets in crop units. The joint term is
    scaled by 10 (crop units are [0, 1], errors of a few pixels are ~0.05) so both terms start near 1.
    Returns ``(total, {"parts": ..., "joints": ...})``.
    """
    l_parts = F.cross_entropy(out.parts, parts)
    l_joints = 10.0 * F.smooth_l1_loss(out.joints, joints, beta=0.05)
    return l_parts + joint_weight * l_joints, {"parts": l_parts.detach(), "joints": l_joints.detach()}
