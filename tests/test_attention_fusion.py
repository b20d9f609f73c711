"""modistill.models.attention_fusion: shapes, weights, gradients, cost, learning to pick the useful stream."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from modistill.models.attention_fusion import AttentionFusion, attention_fusion_cost
from modistill.models.fusion import create_fusion, list_fusions
from modistill.models.stream import StreamOutput


def _out(pooled: torch.Tensor, b: int, t: int, k: int, layer4: torch.Tensor | None = None) -> StreamOutput:
    frame_logits = torch.zeros(b, t, k)
    feats = {"pooled": pooled}
    if layer4 is not None:
        feats["layer4"] = layer4
    return StreamOutput(frame_logits=frame_logits, video_logits=frame_logits.mean(1), features=feats)


def _fusion(c: int = 8, k: int = 5, **kw) -> AttentionFusion:
    return AttentionFusion(streams=("rgb", "hall"), num_classes=k, feature_dims={"rgb": c, "hall": c}, **kw)


def test_registered_and_built_by_registry():
    assert "attention" in list_fusions()
    m = create_fusion("attention", streams=("rgb", "hall"), num_classes=4, feature_dims={"rgb": 6, "hall": 6})
    assert isinstance(m, AttentionFusion) and m.channels == 6
    with pytest.raises(TypeError):
        create_fusion("attention", streams=("a", "b"), num_classes=4, feature_dims={"a": 6, "b": 6}, bogus=1)
    with pytest.raises(ValueError, match="one feature width"):
        AttentionFusion(streams=("a", "b"), num_classes=4, feature_dims={"a": 6, "b": 8})
    with pytest.raises(ValueError, match="at least 2 streams"):
        AttentionFusion(streams=("a",), num_classes=4, feature_dims={"a": 6})


def test_shapes_weights_sum_to_one_and_init_is_feature_average():
    torch.manual_seed(0)
    b, t, c, k = 3, 4, 8, 5
    m = _fusion(c, k, reduction=2)
    fa, fb = torch.randn(b * t, c), torch.randn(b * t, c)
    outs = {"rgb": _out(fa, b, t, k), "hall": _out(fb, b, t, k)}
    logits = m(outs)
    assert logits.shape == (b, k)
    w = m.attention_weights(outs)
    assert w.shape == (b, t, 2, c)
    torch.testing.assert_close(w, torch.full_like(w, 0.5))  # zero-initialised fc2: uniform start
    expect = m.classifier((fa + fb) / 2).view(b, t, k).mean(1)
    torch.testing.assert_close(logits, expect)
    # after a random perturbation the weights are no longer uniform but still a distribution over streams
    torch.nn.init.normal_(m.fc2.weight, std=1.0)
    w = m.attention_weights(outs)
    assert (w - 0.5).abs().max() > 0.05
    torch.testing.assert_close(w.sum(dim=2), torch.ones(b, t, c))
    assert (w >= 0).all()


def test_missing_stream_is_excluded_from_softmax():
    torch.manual_seed(1)
    b, t, c, k = 2, 3, 8, 4
    m = _fusion(c, k)
    torch.nn.init.normal_(m.fc2.weight)
    fa = torch.randn(b * t, c)
    outs = {"rgb": _out(fa, b, t, k)}  # e.g. an evaluation where "hall" was not run
    w = m.attention_weights(outs)
    assert torch.equal(w[:, :, 0], torch.ones(b, t, c)) and torch.equal(w[:, :, 1], torch.zeros(b, t, c))
    torch.testing.assert_close(m(outs), m.classifier(fa).view(b, t, k).mean(1))
    with pytest.raises(ValueError, match="none of its streams"):
        m({"depth": _out(fa, b, t, k)})
    with pytest.raises(ValueError, match="expected"):
        m({"rgb": _out(torch.randn(b * t, c + 1), b, t, k)})


def test_gradients_reach_both_streams_and_all_parameters():
    torch.manual_seed(2)
    b, t, c, k = 2, 3, 8, 4
    m = _fusion(c, k, reduction=2)
    fa = torch.randn(b * t, c, requires_grad=True)
    fb = torch.randn(b * t, c, requires_grad=True)
    labels = torch.tensor([0, 3])
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(2):  # fc1 gets no gradient while fc2 is still zero: one step unlocks it
        opt.zero_grad()
        fa.grad = fb.grad = None
        F.cross_entropy(m({"rgb": _out(fa, b, t, k), "hall": _out(fb, b, t, k)}), labels).backward()
        opt.step()
    assert fa.grad.abs().sum() > 0 and fb.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_spatial_variant_shapes_and_gradients():
    torch.manual_seed(3)
    b, t, c, k, h = 2, 2, 8, 3, 4
    m = _fusion(c, k, spatial=True, reduction=4)
    maps = [torch.rand(b * t, c, h, h, requires_grad=True) for _ in range(2)]
    outs = {n: _out(x.mean(dim=(2, 3)), b, t, k, layer4=x) for n, x in zip(("rgb", "hall"), maps)}
    logits = m(outs)
    assert logits.shape == (b, k)
    # uniform start: the fused map's average pool equals the average of the two pooled features
    torch.testing.assert_close(
        logits, m.classifier((maps[0] + maps[1]).mean(dim=(2, 3)) / 2).view(b, t, k).mean(1)
    )
    torch.nn.init.normal_(m.spatial_conv.weight)
    w = m.attention_weights(outs)
    assert w.shape == (b, t, 2, c, h, h)
    torch.testing.assert_close(w.sum(dim=2), torch.ones(b, t, c, h, h))
    assert (w[..., 0, 0] - w[..., 1, 1]).abs().max() > 1e-3  # really varies over positions
    m(outs).sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in maps)
    assert m.spatial_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("spatial", [False, True])
def test_cost_matches_module(spatial):
    c, k, r, hw = 16, 7, 4, (3, 3)
    m = _fusion(c, k, reduction=r, spatial=spatial)
    cost = attention_fusion_cost(c, k, reduction=r, spatial=spatial, spatial_size=hw)
    assert cost == m.cost(spatial_size=hw)
    assert cost["params"] == sum(p.numel() for p in m.parameters())
    n = 6  # frames (B*T)
    outs = {
        s: _out(torch.randn(n, c), 2, 3, k, layer4=torch.randn(n, c, *hw) if spatial else None)
        for s in ("rgb", "hall")
    }
    with FlopCounterMode(display=False) as fc:
        m(outs)
    assert fc.get_total_flops() == n * cost["flops_per_frame"]
    # hand-computed: S*C = 32, hidden 8: (32*8+8) + (8*32+32) + (16*7+7)
    if not spatial:
        assert cost["params"] == 264 + 288 + 119 and cost["flops_per_frame"] == 2 * (256 + 256 + 112)


@pytest.mark.parametrize("informative", [0, 1])
def test_learns_to_weight_the_informative_stream(informative):
    """Only one stream carries the class; the other is loud noise, drawn afresh each step so it cannot be
    memorised. Starting from 0.5, the weights must move to the useful stream."""
    g = torch.Generator().manual_seed(4)
    b, t, c, k = 64, 2, 8, 4
    labels = torch.randint(0, k, (b,), generator=g)
    protos = 3.0 * torch.randn(k, c, generator=g)

    def batch() -> dict[str, StreamOutput]:
        useful = protos[labels].repeat_interleave(t, 0) + 0.3 * torch.randn(b * t, c, generator=g)
        noise = 10.0 * torch.randn(b * t, c, generator=g)
        feats = [useful, noise] if informative == 0 else [noise, useful]
        return {"rgb": _out(feats[0], b, t, k), "hall": _out(feats[1], b, t, k)}

    torch.manual_seed(5)
    m = _fusion(c, k, reduction=2)
    before = m.attention_weights(batch())[:, :, informative].mean().item()
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(m(batch()), labels).backward()
        opt.step()
    held_out = batch()
    with torch.no_grad():
        after = m.attention_weights(held_out)[:, :, informative].mean().item()
        acc = (m(held_out).argmax(1) == labels).float().mean().item()
    assert before == pytest.approx(0.5)
    assert after > 0.85, after
    assert acc > 0.95, acc


@pytest.mark.parametrize("spatial", [False, True])
def test_plugs_into_multistream_net(spatial):
    from modistill.models import MultiStreamNet, StreamSpec

    torch.manual_seed(6)
    spec = StreamSpec(backbone="resnet18", modality="rgb", width=0.125)
    net = MultiStreamNet(
        streams={"rgb": spec, "hall": spec},
        num_classes=3,
        fusion="attention",
        fusion_options={"reduction": 4, "spatial": spatial},
    )
    assert isinstance(net.fusion, AttentionFusion)
    assert any(k.startswith("fusion.fc1.") for k in net.state_dict())
    clips = torch.randn(2, 2, 3, 32, 32)
    out = net({"rgb": clips})
    assert out.logits.shape == (2, 3)
    F.cross_entropy(out.logits, torch.tensor([0, 2])).backward()
    for name in ("rgb", "hall"):  # gradients reach both streams through the fused feature
        g = net.streams[name].backbone.layer4[0].conv1.weight.grad
        assert g is not None and g.abs().sum() > 0, name
    assert net.fusion.fc2.weight.grad.abs().sum() > 0
    # the hall stream alone (e.g. evaluated without the rgb stream) still gives fused logits
    assert net({"rgb": clips}, streams=["hall"]).logits.shape == (2, 3)
