"""Folding eval-mode BatchNorm into the convolution before it: an inference-only rewrite of a stream.

In eval mode BN is the per-channel affine map ``y = γ (x - μ) / sqrt(σ² + ε) + β`` with the running statistics
μ, σ², so ``bn(conv(x))`` is one convolution with weight ``W γ / s`` and bias ``β + (b - μ) γ / s``
(s = sqrt(σ² + ε); b = 0 for the bias-free convolutions of a ResNet). The deployed model folds every such pair
(deploy/precision.py): each folded BN is one memory-bound pass over an activation map less per forward.

A pair is folded only where nothing sits between the two: the BN right after a stream's temporal convolution
(``conv -> temporal -> bn`` in unit 2 of each stage, stream.py) stays. Folded modules compute the same
function in eval mode only; they are not for training (the statistics are baked in).
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ModelConfigError
from .resnet import BasicBlock, Bottleneck, ResNet
from .stream import TEMPORAL_UNIT, VideoStream

__all__ = ["fold_conv_bn", "fold_stream_batchnorm"]


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution computing ``bn(conv(x))`` with ``bn`` in eval mode (running statistics), in fp32 math
    and then ``conv``'s dtype, device and weight layout."""
    if bn.running_mean is None or bn.running_var is None:
        raise ModelConfigError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    w = conv.weight.float()
    scale = torch.ones_like(bn.running_var, dtype=torch.float32) if bn.weight is None else bn.weight.float()
    scale = scale / torch.sqrt(bn.running_var.float() + bn.eps)
    shift = torch.zeros_like(scale) if bn.bias is None else bn.bias.float()
    b = torch.zeros_like(scale) if conv.bias is None else conv.bias.float()
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    fmt = torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last) else None
    weight = (w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
    out.weight = nn.Parameter(weight.contiguous(memory_format=fmt) if fmt else weight.contiguous(),
                              requires_grad=False)
    out.bias = nn.Parameter((shift + (b - bn.running_mean.float()) * scale).to(conv.weight.dtype),
                            requires_grad=False)
    return out.to(conv.weight.device)


def _fold(owner: nn.Module, conv: str, bn: str) -> int:
    setattr(owner, conv, fold_conv_bn(getattr(owner, conv), getattr(owner, bn)))
    setattr(owner, bn, nn.Identity())
    return 1


def _fold_backbone(backbone: ResNet, keep: set[int]) -> int:
    """Fold every (conv, bn) pair of ``backbone`` except the BNs whose ``id`` is in ``keep``; returns the count."""
    n = _fold(backbone, "conv1", "bn1") if isinstance(backbone.bn1, nn.BatchNorm2d) else 0
    for stage in backbone.stages():
        for unit in stage:
            pairs = [("conv1", "bn1"), ("conv2", "bn2")]
            if isinstance(unit, Bottleneck):
                pairs.append(("conv3", "bn3"))
            elif not isinstance(unit, BasicBlock):
                raise TypeError(f"unknown residual unit {type(unit).__name__}")
            for conv, bn in pairs:
                module = getattr(unit, bn)
                if isinstance(module, nn.BatchNorm2d) and id(module) not in keep:
                    n += _fold(unit, conv, bn)
            ds = unit.downsample
            if ds is not None and isinstance(ds[1], nn.BatchNorm2d):
                ds[0], ds[1] = fold_conv_bn(ds[0], ds[1]), nn.Identity()
                n += 1
    return n


def fold_stream_batchnorm(stream: VideoStream) -> int:
    """Fold ``stream``'s BatchNorm layers into their convolutions in place (inference only, module docstring);
    returns how many were folded. The BN after each temporal convolution is kept."""
    keep: set[int] = set()
    if stream.temporal is not None:
        for stage in stream.backbone.stages():
            unit = stage[TEMPORAL_UNIT]
            keep.add(id(unit.bn2 if isinstance(unit, Bottleneck) else unit.bn1))
    return _fold_backbone(stream.backbone, keep)
