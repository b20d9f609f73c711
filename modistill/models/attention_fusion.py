"""Lightweight attention fusion of appearance and motion(-mimicking) stream features ("attention").

OUR RECONSTRUCTION (REF §6). Lu et al. (ICONIP 2020) state only that "a lightweight attention-based
fusion module" combines appearance and motion information; the design below is ours, in the spirit of
squeeze-and-excitation (Hu et al., CVPR 2018: a bottleneck MLP, reduction r = 16, giving channel weights)
and of selective-kernel attention (Li et al., CVPR 2019: a softmax across branches, so that the branches
compete per channel).

Per frame, with S fused streams each giving a pooled feature ``f_s`` of C channels:

    z = concat(f_1, ..., f_S)                        (S*C,)
    a = W2 relu(W1 z + b1) + b2                       (S*C,) -> reshaped (S, C)
    w[s, c] = softmax over s of a[s, c]               sum_s w[s, c] = 1
    g = sum_s w[s] * f_s                              (C,)
    frame logits = W_cls g + b_cls                    (K,);  video logits = mean over the T frames (REF §1)

``W2, b2`` start at zero, so at initialisation every weight is 1/S and the module is a plain feature
average followed by a linear classifier; training moves the weights towards the more useful stream, per
channel and per input. With ``spatial=True`` the weights also vary over the layer4 positions: a 1x1
convolution over the concatenated layer4 maps adds a per-stream, per-position logit ``a_sp[s, y, x]``
(zero-initialised) to ``a[s, c]`` before the softmax; the fused map is then average-pooled. Streams that
were not run (the fusion receives the run subset, see fusion.py) get zero features and are excluded from
the softmax.

Cost: :func:`attention_fusion_cost` (exact parameter count and matmul FLOPs per frame, checked in the
tests). For ResNet-18 features (C = 512), two streams, K = 60, r = 16: 162,940 parameters and 0.32 MFLOPs
per frame, against about 3.6 GFLOPs (1.8 G multiply-adds, torchvision) per 224x224 frame for ResNet-18.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .errors import ModelConfigError, ModelInputError, UnknownNameError
from .fusion_registry import register_fusion
from .stream import StreamOutput

__all__ = ["AttentionFusion", "attention_fusion_cost"]


def _hidden(num_streams: int, channels: int, reduction: int) -> int:
    return max(1, (num_streams * channels) // reduction)


def attention_fusion_cost(
    channels: int,
    num_classes: int,
    reduction: int = 16,
    num_streams: int = 2,
    spatial: bool = False,
    spatial_size: tuple[int, int] = (7, 7),
) -> dict[str, int]:
    """Exact parameter count and per-frame FLOPs of an :class:`AttentionFusion`.

    FLOPs count each multiply-add of the linear / 1x1-conv layers as 2 (the convention of
    ``torch.utils.flop_counter``); the elementwise softmax, weighted sum and pooling (O(S*C) or O(S*C*h*w))
    are left out, as that counter does. Returns ``{"params", "flops_per_frame", "hidden"}``.
    """
    sc = num_streams * channels
    h = _hidden(num_streams, channels, reduction)
    params = (sc * h + h) + (h * sc + sc) + (channels * num_classes + num_classes)
    macs = sc * h + h * sc + channels * num_classes
    if spatial:
        hw = spatial_size[0] * spatial_size[1]
        params += sc * num_streams + num_streams
        macs += sc * num_streams * hw
    return {"params": params, "flops_per_frame": 2 * macs, "hidden": h}


@register_fusion("attention")
class AttentionFusion(nn.Module):
    """Softmax-over-streams channel attention on pooled features, then a linear classifier.

    Args:
        streams: the fused stream names, in order (e.g. ``("rgb", "hall")``).
        num_classes: K.
        feature_dims: C per stream (``features["pooled"]`` width); all streams must share one C, since the
            fused feature is a weighted sum.
        reduction: r, bottleneck ratio of the weight MLP (hidden = S*C // r, at least 1); 16 as in SE-Net.
        spatial: also weight per layer4 position (uses ``features["layer4"]`` (B*T, C, h, w)).
        dropout: dropout on the fused feature before the classifier.

    ``forward(outputs)`` -> video logits (B, K); :meth:`attention_weights` gives the weights.
    """

    def __init__(
        self,
        *,
        streams: tuple[str, ...],
        num_classes: int,
        feature_dims: dict[str, int],
        reduction: int = 16,
        spatial: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.streams = tuple(streams)
        if len(self.streams) < 2:
            raise ModelConfigError(f"attention fusion needs at least 2 streams to weigh, got {self.streams}")
        missing = [s for s in self.streams if s not in feature_dims]
        if missing:
            raise ModelConfigError(f"attention fusion: no feature_dims for stream(s) {missing}")
        dims = {feature_dims[s] for s in self.streams}
        if len(dims) != 1:
            raise ModelConfigError(
                f"attention fusion needs one feature width for all streams, got "
                f"{ {s: feature_dims[s] for s in self.streams} }"
            )
        if reduction < 1:
            raise ModelConfigError(f"reduction must be >= 1, got {reduction}")
        self.channels = dims.pop()
        self.reduction = reduction
        self.num_classes = num_classes
        self.spatial = spatial
        s, c = len(self.streams), self.channels
        h = _hidden(s, c, reduction)
        self.fc1 = nn.Linear(s * c, h)
        self.fc2 = nn.Linear(h, s * c)
        # Zero start: uniform 1/S weights, so the module begins as a feature average (a neutral fusion).
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.spatial_conv: nn.Conv2d | None = None
        if spatial:
            self.spatial_conv = nn.Conv2d(s * c, s, kernel_size=1)
            nn.init.zeros_(self.spatial_conv.weight)
            nn.init.zeros_(self.spatial_conv.bias)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)

    def _gather(self, outputs: dict[str, StreamOutput], key: str) -> tuple[list[Tensor], Tensor, int, int]:
        """Per fused stream the feature ``key`` (zeros for streams not run), the run mask (S,), and B, T."""
        present = [s for s in self.streams if s in outputs]
        if not present:
            raise ModelInputError(
                f"attention fusion got none of its streams {self.streams}; got {sorted(outputs)}"
            )
        ref = outputs[present[0]]
        b, t = ref.frame_logits.shape[:2]
        feats: list[Tensor | None] = []
        for s in self.streams:
            if s not in outputs:
                feats.append(None)
                continue
            f = outputs[s].features.get(key)
            if f is None:
                raise UnknownNameError(f"attention fusion needs features[{key!r}] of stream {s!r}")
            if f.shape[0] != b * t or f.shape[1] != self.channels:
                raise ModelInputError(
                    f"stream {s!r} features[{key!r}] has shape {tuple(f.shape)}; expected ({b * t}, "
                    f"{self.channels}, ...) for B={b}, T={t}"
                )
            feats.append(f)
        like = next(f for f in feats if f is not None)
        filled = [f if f is not None else torch.zeros_like(like) for f in feats]
        mask = torch.tensor([s in outputs for s in self.streams], device=like.device)
        return filled, mask, b, t

    def _weights_and_fused(self, outputs: dict[str, StreamOutput]) -> tuple[Tensor, Tensor, int, int]:
        """Weights (B*T, S, C[, h, w]) and the fused pooled feature (B*T, C)."""
        pooled, mask, b, t = self._gather(outputs, "pooled")
        z = torch.cat(pooled, dim=1)  # (B*T, S*C)
        logits = self.fc2(torch.relu(self.fc1(z))).view(-1, len(self.streams), self.channels)
        if self.spatial_conv is None:
            logits = logits.masked_fill(~mask.view(1, -1, 1), float("-inf"))
            w = torch.softmax(logits, dim=1)
            fused = (w * torch.stack(pooled, dim=1)).sum(dim=1)
            return w, fused, b, t
        maps, _, _, _ = self._gather(outputs, "layer4")
        sp = self.spatial_conv(torch.cat(maps, dim=1))  # (B*T, S, h, w)
        logits = logits[..., None, None] + sp[:, :, None]  # (B*T, S, C, h, w)
        logits = logits.masked_fill(~mask.view(1, -1, 1, 1, 1), float("-inf"))
        w = torch.softmax(logits, dim=1)
        fused = (w * torch.stack(maps, dim=1)).sum(dim=1).mean(dim=(2, 3))
        return w, fused, b, t

    def attention_weights(self, outputs: dict[str, StreamOutput]) -> Tensor:
        """Fusion weights ``(B, T, S, C)`` (``(B, T, S, C, h, w)`` if spatial); they sum to 1 over S."""
        w, _, b, t = self._weights_and_fused(outputs)
        return w.view(b, t, *w.shape[1:])

    def forward(self, outputs: dict[str, StreamOutput]) -> Tensor:
        """Stream outputs -> fused video logits (B, K): frame logits of the fused feature, averaged over T."""
        _, fused, b, t = self._weights_and_fused(outputs)
        return self.classifier(self.dropout(fused)).view(b, t, -1).mean(dim=1)

    def cost(self, spatial_size: tuple[int, int] = (7, 7)) -> dict[str, Any]:
        """:func:`attention_fusion_cost` for this module's configuration."""
        return attention_fusion_cost(
            self.channels,
            self.num_classes,
            reduction=self.reduction,
            num_streams=len(self.streams),
            spatial=self.spatial,
            spatial_size=spatial_size,
        )
