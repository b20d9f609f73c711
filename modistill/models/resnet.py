"""2D ResNet-18/34/50 in plain PyTorch, with torchvision's parameter names and layout.

Layout facts follow torchvision's `resnet.py` ("v1.5": the stride of a bottleneck sits on its 3x3 conv, stride
on the first unit of stages 2-4, a 1x1 conv + BN "downsample" on the skip path where the shape changes). At
width 1.0 the state_dict keys and shapes equal torchvision's, so ImageNet checkpoints load unchanged (see
pretrained.py). ``resnet18/34/50`` register themselves in the model registry (registry.py) under those names.

Unlike torchvision, each residual unit can also

- return its *pre-activation* output (skip + residual, before the final ReLU) — needed by the cross-stream
  connections of Garcia et al. 2018 eq. 2 (REF §1), which multiply the target's unit-1 output before its ReLU;
- take a separate input for its residual branch (the skip path keeps the unit's own input);
- apply a caller-supplied temporal op right after its first 3x3 convolution (REF §1: temporal conv "after the
  3x3 convolution"). The op is passed in, not stored, so the backbone's keys stay torchvision-compatible.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .errors import ModelConfigError, ModelInputError
from .registry import register_model

# A temporal op maps a per-frame batch (B*T, C, H, W) to the same shape, given T.
TemporalOp = Callable[[Tensor, int], Tensor]

__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "SubsampledPointwiseConv", "resnet18", "resnet34", "resnet50", "STAGE_NAMES",
]

STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class SubsampledPointwiseConv(nn.Conv2d):
    """A 1x1 convolution with stride s, computed as keeping every s-th row and column and then a stride-1 1x1
    convolution: the same map, the same parameters and state-dict keys (``weight``), the same ``stride``
    attribute. Why: on an x86 CPU without AVX-512 (AMD EPYC with AVX2, torch 2.13.0+cpu) the backward of a
    channels_last 1x1 stride-2 convolution with fewer than 8 input channels corrupts the heap: glibc aborts
    ("double free or corruption"), or gradients differ from run to run. ResNets reach it at width <= 0.0625
    (the layer2 downsample has 4 input channels); `_conv1x1` uses this class only there, so every other
    model keeps the plain kernel (tests/test_models_resnet_downsample.py)."""

    def forward(self, x: Tensor) -> Tensor:
        sh, sw = self.stride
        return nn.functional.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias)


# Below this many input channels a strided 1x1 conv is computed by `SubsampledPointwiseConv`.
_SMALL_POINTWISE_CIN = 8


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    if stride != 1 and cin < _SMALL_POINTWISE_CIN:
        return SubsampledPointwiseConv(cin, cout, kernel_size=1, stride=stride, bias=False)
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34). The temporal op goes after ``conv1``, the block's *first* 3x3 conv.

    Why conv1: REF §1 places the temporal conv after "the 3x3 convolution" of a bottleneck, which has exactly
    one; a basic block has two, and putting it after the first keeps the same position relative to the unit's
    input (inside the residual branch, before its first BN).
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x: Tensor, temporal: TemporalOp | None = None, frames: int = 1) -> Tensor:
        """Residual branch F(x): (N, C_in, H, W) -> (N, C_out, H/s, W/s)."""
        out = self.conv1(x)
        if temporal is not None:
            out = temporal(out, frames)
        out = self.relu(self.bn1(out))
        return self.bn2(self.conv2(out))

    def forward_pre(
        self, x: Tensor, branch: Tensor | None = None, temporal: TemporalOp | None = None, frames: int = 1
    ) -> Tensor:
        """Pre-activation ``skip(x) + F(branch if given else x)`` (no final ReLU): (N, C_out, h, w)."""
        identity = x if self.downsample is None else self.downsample(x)
        return identity + self.residual(x if branch is None else branch, temporal, frames)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.forward_pre(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, torchvision v1.5) -> 1x1 x4 (ResNet-50). The temporal op goes after ``conv2``."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x: Tensor, temporal: TemporalOp | None = None, frames: int = 1) -> Tensor:
        """Residual branch F(x): (N, C_in, H, W) -> (N, 4*planes, H/s, W/s)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        if temporal is not None:
            out = temporal(out, frames)
        out = self.relu(self.bn2(out))
        return self.bn3(self.conv3(out))

    def forward_pre(
        self, x: Tensor, branch: Tensor | None = None, temporal: TemporalOp | None = None, frames: int = 1
    ) -> Tensor:
        """Pre-activation ``skip(x) + F(branch if given else x)`` (no final ReLU): (N, C_out, h, w)."""
        identity = x if self.downsample is None else self.downsample(x)
        return identity + self.residual(x if branch is None else branch, temporal, frames)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.forward_pre(x))


Block = BasicBlock | Bottleneck


def _out_channels(unit: nn.Module) -> int:
    # From the last conv, not its BN: a deployed stream's BNs may be folded away (fold.py).
    conv = unit.conv3 if isinstance(unit, Bottleneck) else unit.conv2
    return int(conv.out_channels)


class ResNet(nn.Module):
    """2D ResNet on images (N, in_channels, H, W) -> logits (N, num_classes).

    Args:
        block: BasicBlock or Bottleneck.
        layers: units per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        num_classes: classifier outputs K.
        in_channels: input channels of ``conv1`` (3 for RGB / jet-coloured depth; 2 for flow x/y, ...).
        width: channel multiplier; the stem/first stage gets ``max(1, round(64 * width))`` channels
            (width 0.25 -> 16), later stages double it. Width 1.0 is torchvision's exact layout.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_channels: int = 3,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ModelConfigError(
                f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}"
            )
        if not width > 0:
            raise ModelConfigError(f"width must be > 0, got {width}")
        base = max(1, int(round(64 * width)))
        self.block_type = block
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.width = width
        self.inplanes = base
        self.conv1 = nn.Conv2d(in_channels, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(base * 8 * block.expansion, num_classes)
        # Initialisation as in torchvision (He init, fan_out, for convs; BN gamma 1 / beta 0; default Linear).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        units: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        units += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*units)

    def stages(self) -> list[nn.Sequential]:
        """The four stages ``[layer1, layer2, layer3, layer4]``."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def stage_channels(self) -> tuple[int, ...]:
        """Output channels of each stage (what a cross-stream connection multiplies)."""
        return tuple(_out_channels(stage[-1]) for stage in self.stages())

    @property
    def feature_dim(self) -> int:
        """Channels of the pooled feature fed to ``fc``."""
        return self.fc.in_features

    def stem(self, x: Tensor) -> Tensor:
        """conv1 -> bn1 -> relu -> maxpool: (N, C_in, H, W) -> (N, base, H/4, W/4)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def pool(self, x: Tensor) -> Tensor:
        """Global average pool: (N, C, h, w) -> (N, C)."""
        return torch.flatten(self.avgpool(x), 1)

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> pooled features (N, feature_dim)."""
        x = self.stem(x)
        for stage in self.stages():
            x = stage(x)
        return self.pool(x)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> logits (N, num_classes)."""
        if x.dim() != 4:
            raise ModelInputError(f"ResNet expects images (N, C, H, W), got shape {tuple(x.shape)}")
        return self.fc(self.forward_features(x))


@register_model("resnet18")
def resnet18(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0) -> ResNet:
    """ResNet-18 (basic blocks, 2-2-2-2), torchvision layout.

    11,689,512 parameters at width 1 with 1000 classes, as torchvision's.
    """
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, width)


@register_model("resnet34")
def resnet34(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0) -> ResNet:
    """ResNet-34 (basic blocks, 3-4-6-3), torchvision layout.

    21,797,672 parameters at width 1 with 1000 classes, as torchvision's.
    """
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, width)


@register_model("resnet50")
def resnet50(num_classes: int = 1000, in_channels: int = 3, width: float = 1.0) -> ResNet:
    """ResNet-50 (bottlenecks, 3-4-6-3), torchvision layout (v1.5: stride on the 3x3 conv).

    25,557,032 parameters at width 1 with 1000 classes, as torchvision's.
    """
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, width)
