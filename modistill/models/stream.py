"""A video stream: a 2D ResNet run on the frames of a clip as one batch, plus temporal convolutions.

Garcia et al. 2018 §3.1 / REF §1: each stream is a 2D ResNet over frames; kernel-3 temporal convs sit in the
2nd residual unit (index 1) of each of the four stages, identity-initialised; frame logits are averaged over
the sampled frames to give the video logits (REF §1 "Prediction").

The stream holds the untouched 2D backbone as ``backbone`` (torchvision-compatible keys, so
``load_pretrained(stream.backbone, path)`` works) and the temporal convs separately in ``temporal``
(keys ``temporal.layer1.weight`` ...). The stage-by-stage methods (``stem`` / ``unit0`` / ``rest`` / ``head``)
exist so that :class:`~modistill.models.multistream.MultiStreamNet` can run several streams in lock-step and
apply cross-stream connections between unit 1 and unit 2 of a stage; ``forward`` uses the same methods.

Registered models (registry.py): ``stream_resnet18/34/50``, a stream over that backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .errors import ModelInputError
from .registry import create_model, register_model
from .resnet import STAGE_NAMES, ResNet
from .temporal import TemporalConv

__all__ = [
    "StreamOutput",
    "VideoStream",
    "TEMPORAL_UNIT",
    "stream_resnet18",
    "stream_resnet34",
    "stream_resnet50",
]

# Index of the residual unit (within each stage) that holds the temporal conv and receives connections (the
# 2nd unit, REF §1).
TEMPORAL_UNIT = 1


@dataclass
class StreamOutput:
    """What one stream returns.

    Attributes:
        frame_logits: (B, T, K) per-frame logits.
        video_logits: (B, K) mean of ``frame_logits`` over T (REF §1: logits, not probabilities).
        features: ``"layer1"``..``"layer4"`` stage outputs (B*T, C, h, w) after the stage's last ReLU, and
            ``"pooled"`` (B*T, C) the globally pooled layer4 output fed to the classifier.
    """

    frame_logits: Tensor
    video_logits: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)


class VideoStream(nn.Module):
    """Clips (B, T, C, H, W) -> :class:`StreamOutput`.

    Args:
        backbone: a :class:`ResNet` instance, or a registered 2D backbone name (``"resnet18"``...).
        num_classes, in_channels, width: passed to the backbone factory when ``backbone`` is a name.
        temporal: add the identity-initialised temporal convs (False = a purely frame-wise 2D network).
        channels_last: run the frames in channels_last memory format (why: on CPU it makes the convolutions
            markedly faster and lets the temporal conv run as a copy-free view, see temporal.py). Values are
            unaffected; feature tensors come back channels_last-strided.
    """

    def __init__(
        self,
        backbone: ResNet | str = "resnet50",
        num_classes: int = 1000,
        in_channels: int = 3,
        width: float = 1.0,
        temporal: bool = True,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(backbone, str):
            backbone = create_model(backbone, num_classes=num_classes, in_channels=in_channels, width=width)
        if not isinstance(backbone, ResNet):
            raise TypeError(f"VideoStream needs a modistill ResNet backbone, got {type(backbone).__name__}")
        self.backbone = backbone
        self.channels_last = channels_last
        self.temporal: nn.ModuleDict | None = None
        if temporal:
            self.temporal = nn.ModuleDict(
                {
                    name: TemporalConv(_temporal_channels(stage))
                    for name, stage in zip(STAGE_NAMES, backbone.stages())
                }
            )

    @property
    def num_classes(self) -> int:
        return self.backbone.num_classes

    @property
    def in_channels(self) -> int:
        return self.backbone.in_channels

    def stem(self, clips: Tensor) -> Tensor:
        """(B, T, C, H, W) -> stem output (B*T, C0, H/4, W/4)."""
        if clips.dim() != 5:
            raise ModelInputError(
                f"VideoStream expects clips (B, T, C, H, W), got shape {tuple(clips.shape)}"
            )
        b, t, c, h, w = clips.shape
        if c != self.in_channels:
            raise ModelInputError(
                f"stream expects {self.in_channels} input channels, clips have {c} "
                f"(shape {tuple(clips.shape)})"
            )
        x = clips.reshape(b * t, c, h, w)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone.stem(x)

    def unit0(self, stage: int, x: Tensor) -> Tensor:
        """Unit 1 (index 0) of ``stage`` (1..4), output before its final ReLU: (B*T, C, h, w)."""
        return self.backbone.stages()[stage - 1][0].forward_pre(x)

    def rest(self, stage: int, x: Tensor, frames: int, branch: Tensor | None = None) -> Tensor:
        """Units 2.. of ``stage`` given unit 1's post-ReLU output ``x`` (B*T, C, h, w).

        ``branch``, if given, replaces the input of unit 2's residual branch (a cross-stream connection); unit
        2's skip path keeps ``x``. Unit 2 applies the temporal conv after its first 3x3 conv.
        """
        units = self.backbone.stages()[stage - 1]
        name = STAGE_NAMES[stage - 1]
        op = self.temporal[name] if self.temporal is not None else None
        x = torch.relu(units[TEMPORAL_UNIT].forward_pre(x, branch, op, frames))
        for unit in list(units)[TEMPORAL_UNIT + 1 :]:
            x = unit(x)
        return x

    def head(self, x: Tensor, batch: int, frames: int, features: dict[str, Tensor]) -> StreamOutput:
        """layer4 output (B*T, C, h, w) -> :class:`StreamOutput` (adds ``features["pooled"]``)."""
        pooled = self.backbone.pool(x)
        features["pooled"] = pooled
        frame_logits = self.backbone.fc(pooled).view(-1, frames, self.num_classes)  # -1: B stays dynamic
        return StreamOutput(
            frame_logits=frame_logits, video_logits=frame_logits.mean(dim=1), features=features
        )

    def forward(self, clips: Tensor) -> StreamOutput:
        """(B, T, C, H, W) -> StreamOutput with frame_logits (B, T, K), video_logits (B, K) and features."""
        b, t = clips.shape[:2]
        x = self.stem(clips)
        features: dict[str, Tensor] = {}
        for stage in range(1, 5):
            x = self.rest(stage, torch.relu(self.unit0(stage, x)), t)
            features[STAGE_NAMES[stage - 1]] = x
        return self.head(x, b, t, features)


def _temporal_channels(stage: nn.Sequential) -> int:
    """Channels right after the 3x3 conv of unit 2 (where the temporal conv sits)."""
    unit = stage[TEMPORAL_UNIT]
    conv = unit.conv2 if hasattr(unit, "conv3") else unit.conv1
    return int(conv.out_channels)


@register_model("stream_resnet18")
def stream_resnet18(
    num_classes: int = 1000,
    in_channels: int = 3,
    width: float = 1.0,
    temporal: bool = True,
    channels_last: bool = True,
) -> VideoStream:
    """VideoStream over a resnet18 backbone with identity-initialised temporal convs (clips)."""
    return VideoStream("resnet18", num_classes, in_channels, width, temporal, channels_last)


@register_model("stream_resnet34")
def stream_resnet34(
    num_classes: int = 1000,
    in_channels: int = 3,
    width: float = 1.0,
    temporal: bool = True,
    channels_last: bool = True,
) -> VideoStream:
    """VideoStream over a resnet34 backbone with identity-initialised temporal convs (clips)."""
    return VideoStream("resnet34", num_classes, in_channels, width, temporal, channels_last)


@register_model("stream_resnet50")
def stream_resnet50(
    num_classes: int = 1000,
    in_channels: int = 3,
    width: float = 1.0,
    temporal: bool = True,
    channels_last: bool = True,
) -> VideoStream:
    """VideoStream over a resnet50 backbone with identity-initialised temporal convs (clips)."""
    return VideoStream("resnet50", num_classes, in_channels, width, temporal, channels_last)
