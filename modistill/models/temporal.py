"""Temporal convolution over the frames of a clip, run on a per-frame batch.

REF §1 (Feichtenhofer et al. 2017, Garcia et al. 2018 §3.1): a "1x1x3" convolution, kernel 3 over time, C -> C
channels, placed inside the 2nd residual unit of every stage; zero padding in time so T is preserved; no BN
and no ReLU of its own (in our placement the unit's own BN + ReLU follow it); initialised as an identity
mapping centred in time (centre tap = identity matrix, other taps 0) so that at initialisation the video
network computes exactly what the frame-wise 2D network computes. No bias: the following BN would cancel it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ModelInputError

__all__ = ["TemporalConv"]


class TemporalConv(nn.Module):
    """Kernel-3 temporal conv applied to frames stacked in the batch dimension.

    ``weight`` is (C_out, C_in, 3, 1): tap 0 looks at frame t-1, tap 1 at t, tap 2 at t+1.

    The op is a single ``conv2d`` with a (3, 1) kernel on a *view* of the input: a per-frame batch
    (B*T, C, H, W) is reinterpreted as (B, C, T, H*W) by a reshape + transpose, so time is the conv's "height"
    and all pixels are its "width". For channels_last input that view is itself exactly channels_last, so the
    conv runs on oneDNN/cuDNN's fast path without any copy (why: the op must add almost nothing over the 2D
    backbone; conv3d fell back to a slow kernel on CPU, and per-frame Python loops are slower still). For
    contiguous (NCHW) input the view is not a standard layout and the conv copies internally; still correct.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 1))
        self.reset_identity()

    @torch.no_grad()
    def reset_identity(self) -> None:
        """Centre tap = identity matrix, other taps 0 (REF §1)."""
        self.weight.zero_()
        self.weight[:, :, 1, 0].copy_(torch.eye(self.channels))

    @torch.no_grad()
    def is_identity(self) -> bool:
        ident = torch.zeros_like(self.weight)
        ident[:, :, 1, 0] = torch.eye(self.channels, dtype=self.weight.dtype, device=self.weight.device)
        return bool(torch.equal(self.weight, ident))

    def forward(self, x: Tensor, frames: int) -> Tensor:
        """(B*T, C, H, W) with T = ``frames`` consecutive per clip -> (B*T, C, H, W)."""
        n, c, h, w = x.shape
        if c != self.channels:
            raise ModelInputError(f"TemporalConv has {self.channels} channels, got input with {c}")
        if frames < 1 or n % frames:
            raise ModelInputError(f"batch of {n} frames is not a whole number of clips of T={frames}")
        v = x.reshape(-1, frames, c, h * w).transpose(1, 2)  # (B, C, T, H*W), a view; -1 keeps B dynamic
        y = F.conv2d(v, self.weight, padding=(1, 0))  # zero padding in time
        return y.transpose(1, 2).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_t=3"
