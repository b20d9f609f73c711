"""Temporal convolutions and video streams: exact math, identity-init equivalence, drop-in behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modistill.models import TemporalConv, VideoStream, create_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster and avoids oversubscribing a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def rel_close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    """float32 equality up to rounding, relative to the tensors' scale (memory layouts round differently)."""
    return bool((a - b).abs().max() <= rel * b.abs().max())


def temporal_loop(x: torch.Tensor, weight: torch.Tensor, frames: int) -> torch.Tensor:
    """Reference: y_t = sum_k W_k x_{t+k-1}, zero outside [0, T) — per frame, per tap, explicit loops."""
    n, c, h, w = x.shape
    xb = x.reshape(n // frames, frames, c, h, w)
    y = torch.zeros_like(xb)
    for t in range(frames):
        for k in range(3):
            s = t + k - 1
            if 0 <= s < frames:
                y[:, t] += torch.einsum("oc,bchw->bohw", weight[:, :, k, 0], xb[:, s])
    return y.reshape(n, c, h, w)


def test_temporal_conv_identity_init_exact() -> None:
    tc = TemporalConv(5)
    assert tc.is_identity()
    w = tc.weight[:, :, :, 0]
    assert torch.equal(w[:, :, 1], torch.eye(5))
    assert torch.count_nonzero(w[:, :, 0]) == 0 and torch.count_nonzero(w[:, :, 2]) == 0
    x = torch.randn(6, 5, 3, 4)
    assert torch.allclose(tc(x, 3), x, atol=0, rtol=0)


def test_temporal_conv_hand_computed_tiny() -> None:
    # One channel, T=3, one pixel: taps (a, b, c) -> y_t = a x_{t-1} + b x_t + c x_{t+1}, zero padded.
    tc = TemporalConv(1)
    with torch.no_grad():
        tc.weight.copy_(torch.tensor([2.0, 3.0, 5.0]).view(1, 1, 3, 1))
    x = torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1)
    expected = torch.tensor([3 * 1 + 5 * 10, 2 * 1 + 3 * 10 + 5 * 100, 2 * 10 + 3 * 100]).float()
    assert torch.equal(tc(x, 3).flatten(), expected)


@pytest.mark.parametrize("channels_last", [False, True])
def test_temporal_conv_matches_loop_reference(channels_last: bool) -> None:
    torch.manual_seed(0)
    tc = TemporalConv(4).double()
    with torch.no_grad():
        tc.weight.normal_()
    x = torch.randn(2 * 5, 4, 3, 3, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = tc(x, 5)
    assert y.shape == x.shape
    assert torch.allclose(y, temporal_loop(x, tc.weight, 5), atol=1e-12)
    # Clips do not leak into each other: changing clip 1 leaves clip 0's output unchanged.
    x2 = x.clone()
    x2[5:] += 1.0
    assert torch.equal(tc(x2, 5)[:5], y[:5])
    with pytest.raises(ValueError, match="whole number of clips"):
        tc(x, 3)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_identity_init_stream_equals_framewise_2d(backbone: str, train_mode: bool) -> None:
    torch.manual_seed(0)
    stream = VideoStream(backbone, num_classes=6, width=0.125).double()  # float64: exactness, not luck
    randomize_bn(stream)
    with torch.no_grad():  # random (not default) conv/fc weights so the equality is not a coincidence
        for p in stream.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    stream.train(train_mode)
    clips = torch.randn(2, 3, 3, 40, 40, dtype=torch.float64)
    out = stream(clips)
    ref = stream.backbone(clips.reshape(6, 3, 40, 40))  # same weights, frame-wise 2D forward
    # Train mode: BN statistics over the same B*T frames in both cases.
    assert torch.allclose(out.frame_logits.reshape(6, -1), ref, atol=1e-10, rtol=1e-9)
    assert torch.allclose(out.video_logits, ref.view(2, 3, -1).mean(1), atol=1e-10, rtol=1e-9)


def test_nonidentity_temporal_conv_changes_output() -> None:
    """Guards the equivalence test above: the temporal convs really are on the forward path."""
    torch.manual_seed(0)
    stream = VideoStream("resnet18", num_classes=6, width=0.125).eval()
    clips = torch.randn(2, 3, 3, 32, 32)
    base = stream(clips).frame_logits
    for name in ("layer1", "layer2", "layer3", "layer4"):
        with torch.no_grad():
            stream.temporal[name].weight[:, :, 0] += 0.3  # mix in the previous frame
        changed = stream(clips).frame_logits
        assert not torch.allclose(changed, base, atol=1e-4), name
        stream.temporal[name].reset_identity()
        assert torch.allclose(stream(clips).frame_logits, base, atol=1e-6)


def test_resnet50_dropin_equals_stream_forward() -> None:
    """The 2D drop-in and the stream's frame path give the same logits for the same weights."""
    torch.manual_seed(1)
    model2d = create_model("resnet50", num_classes=9, width=0.125).eval()
    randomize_bn(model2d, seed=3)
    stream = create_model("stream_resnet50", num_classes=9, width=0.125).eval()
    stream.backbone.load_state_dict(model2d.state_dict())  # torchvision-named keys load unchanged
    clips = torch.randn(1, 3, 3, 32, 32)
    ref = model2d(clips.reshape(3, 3, 32, 32))
    assert rel_close(stream(clips).frame_logits[0], ref)


def test_stream_keys_and_temporal_placement() -> None:
    stream = VideoStream("resnet18", num_classes=4, width=0.25)
    keys = set(stream.state_dict())
    bb = {"backbone." + k for k in create_model("resnet18", num_classes=4, width=0.25).state_dict()}
    temporal = {f"temporal.layer{i}.weight" for i in range(1, 5)}
    assert keys == bb | temporal
    # Basic block: after conv1 of unit 2 -> C_stage channels; bottleneck: after conv2 (the "planes" width).
    assert [stream.temporal[f"layer{i}"].channels for i in range(1, 5)] == [16, 32, 64, 128]
    s50 = VideoStream("resnet50", num_classes=4, width=0.25)
    assert [s50.temporal[f"layer{i}"].channels for i in range(1, 5)] == [16, 32, 64, 128]
    no_t = VideoStream("resnet18", num_classes=4, width=0.25, temporal=False)
    assert no_t.temporal is None
    assert set(no_t.state_dict()) == bb
    with pytest.raises(ValueError, match="input channels"):
        stream(torch.randn(1, 2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        stream(torch.randn(2, 3, 32, 32))


def test_stream_memory_format_does_not_change_values() -> None:
    torch.manual_seed(0)
    a = VideoStream("resnet18", num_classes=3, width=0.125, channels_last=True).eval()
    b = VideoStream("resnet18", num_classes=3, width=0.125, channels_last=False).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        for m in (a, b):
            m.temporal["layer2"].weight.normal_(generator=torch.Generator().manual_seed(5))
    clips = torch.randn(2, 2, 3, 32, 32)
    oa, ob = a(clips), b(clips)
    assert oa.features["layer1"].is_contiguous(memory_format=torch.channels_last)
    assert rel_close(oa.frame_logits, ob.frame_logits)


def test_stream_gradients_reach_temporal_and_backbone() -> None:
    torch.manual_seed(0)
    stream = VideoStream("resnet18", num_classes=3, width=0.125)
    stream(torch.randn(2, 3, 3, 32, 32)).video_logits.sum().backward()
    for name, p in stream.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert stream.temporal["layer3"].weight.grad.abs().sum() > 0
