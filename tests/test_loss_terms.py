"""compute_loss / LossSpec against stand-in model outputs (duck-typed MultiStreamOutput)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from modistill.core.config import ConfigError, load_config
from modistill.distill import (
    HALL_WEIGHT,
    LossSpec,
    compute_loss,
    generalized_distillation_loss,
    hallucination_loss,
    mars_loss,
    relation_loss,
    released_step3_spec,
)

B, T, K, C = 2, 3, 5, 4


def _stream(seed: int) -> SimpleNamespace:
    """A stream whose every output is scaled by one leaf parameter ``w`` (so we can see who gets gradient)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.ones((), requires_grad=True)
    frame_logits = torch.randn(B, T, K, generator=g) * w
    feats = {
        "layer3": torch.randn(B * T, C, 4, 4, generator=g) * w,
        "layer4": torch.randn(B * T, C, 2, 2, generator=g) * w,
        "pooled": torch.randn(B * T, C, generator=g) * w,
    }
    return SimpleNamespace(w=w, frame_logits=frame_logits, video_logits=frame_logits.mean(1), features=feats)


def _out(names=("rgb", "depth", "hall"), fuse=("rgb", "depth")) -> SimpleNamespace:
    streams = {n: _stream(i) for i, n in enumerate(names)}
    run = [n for n in fuse if n in streams]
    logits = torch.stack([streams[n].video_logits for n in run]).mean(0) if run else None
    return SimpleNamespace(logits=logits, streams=streams)


LABELS = torch.tensor([1, 4])


def test_ce_on_fused_and_on_a_stream():
    out = _out()
    total, parts = compute_loss(LossSpec(kind="ce"), out, LABELS)
    assert total.item() == pytest.approx(F.cross_entropy(out.logits, LABELS).item())
    assert set(parts) == {"ce", "loss"}
    total, _ = compute_loss(LossSpec(kind="ce", classify="depth"), out, LABELS)
    assert total.item() == pytest.approx(F.cross_entropy(out.streams["depth"].video_logits, LABELS).item())


def test_eq3_eq5_eq7_route_student_and_teacher():
    out = _out()
    s, t = out.streams["hall"], out.streams["depth"]
    hall, _ = compute_loss(LossSpec(kind="hall", hall_layers={"layer3": 1.0, "layer4": 0.5}), out, LABELS)
    ref, _ = hallucination_loss(t.features, s.features, {"layer3": 1.0, "layer4": 0.5}, frames=T)
    assert hall.item() == pytest.approx(ref.item())
    gd, gparts = compute_loss(LossSpec(kind="gd", lam=0.3, T=4.0), out, LABELS)
    ref, _ = generalized_distillation_loss(s.video_logits, t.video_logits, LABELS, lam=0.3, T=4.0)
    assert gd.item() == pytest.approx(ref.item())
    assert {"gd/hard", "gd/soft", "gd/total", "loss"} == set(gparts)
    eq7, parts = compute_loss(LossSpec(kind="eq7", alpha=0.25), out, LABELS)
    l_hall, _ = hallucination_loss(t.features, s.features, {"layer4": HALL_WEIGHT}, frames=T)
    l_gd, _ = generalized_distillation_loss(s.video_logits, t.video_logits, LABELS)
    assert eq7.item() == pytest.approx(0.75 * l_gd.item() + 0.25 * l_hall.item())
    assert {"hall/layer4", "hall/total", "gd/hard", "gd/soft", "eq7/total", "loss"} <= set(parts)


def test_eq3_default_is_the_squared_norm_per_video():
    """Eq. 3's ||.||^2 is a squared norm per sample (REF §2): by default the sum over each video's feature maps
    (T frames x C x h x w), averaged over the B videos, times the chosen weight; not the mean over every
    element, which left eq. 3 almost no gradient. The recipe's default is the same."""
    from modistill.recipes import DepthRecipeConfig

    out = _out()
    s, t = out.streams["hall"], out.streams["depth"]
    sq = ((torch.sigmoid(t.features["layer4"]) - torch.sigmoid(s.features["layer4"])) ** 2).detach()
    per_video = [float(sq[b * T:(b + 1) * T].sum()) for b in range(B)]
    expected = HALL_WEIGHT * sum(per_video) / B
    for spec in (LossSpec(kind="hall"), DepthRecipeConfig().distill_spec("hall")):
        total, _ = compute_loss(spec, out, LABELS)
        assert total.item() == pytest.approx(expected, rel=1e-6)
    assert float(sq.mean()) * HALL_WEIGHT != pytest.approx(expected, rel=1e-3)


def test_eq7_teacher_gets_no_gradient():
    out = _out()
    total, _ = compute_loss(LossSpec(kind="eq7"), out, LABELS)
    total.backward()
    assert out.streams["depth"].w.grad is None
    assert out.streams["hall"].w.grad is not None and out.streams["hall"].w.grad.abs() > 0
    assert out.streams["rgb"].w.grad is None


@pytest.mark.parametrize("distill", ["hall", "gd", "eq7"])
def test_hoffman_is_the_sum_of_its_terms(distill):
    out = _out()
    spec = LossSpec(kind="hoffman", hoffman_distill=distill)
    total, parts = compute_loss(spec, out, LABELS)
    ce_rgb = F.cross_entropy(out.streams["rgb"].video_logits, LABELS)
    ce_depth = F.cross_entropy(out.streams["depth"].video_logits, LABELS)
    d, _ = compute_loss(LossSpec(kind=distill), out, LABELS)
    assert total.item() == pytest.approx((ce_rgb + ce_depth + d).item(), rel=1e-6)
    assert parts["ce/rgb"].item() == pytest.approx(ce_rgb.item())
    total.backward()
    # The depth stream learns only from its own CE term, never from the distillation term.
    depth_w = out.streams["depth"].w
    expected = torch.autograd.grad(
        F.cross_entropy(out.streams["depth"].frame_logits.detach().mean(1) * depth_w, LABELS), depth_w
    )[0]
    assert depth_w.grad.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.streams["hall"].w.grad is not None


def test_released_step3_parity():
    out = _out()
    spec = released_step3_spec()
    total, _ = compute_loss(spec, out, LABELS)
    s, t = out.streams["hall"], out.streams["depth"]
    a_t, a_s = torch.sigmoid(t.features["layer4"]), torch.sigmoid(s.features["layer4"])
    l_hall = 0.01 * ((a_t - a_s) ** 2).sum()
    l_gd, _ = generalized_distillation_loss(s.video_logits, t.video_logits, LABELS, student_temperature=True)
    assert total.item() == pytest.approx((0.5 * l_gd + 0.5 * l_hall).item(), rel=1e-6)


def test_relation_and_mars_specs():
    out = _out(names=("rgb", "flow"), fuse=("rgb", "flow"))
    s, t = out.streams["rgb"], out.streams["flow"]
    spec = LossSpec(
        kind="relation",
        student="rgb",
        teacher="flow",
        relation_layers={"layer3": 1.0},
        temporal_weight=0.5,
        ce_weight=0.2,
    )
    total, parts = compute_loss(spec, out, LABELS)
    rel, _ = relation_loss(s.features, t.features, {"layer3": 1.0}, T=T, temporal_weight=0.5)
    ce = F.cross_entropy(s.video_logits, LABELS)  # classify=None -> the student's own logits
    assert total.item() == pytest.approx((rel + 0.2 * ce).item(), rel=1e-6)
    assert {"rel/layer3", "rel/temporal", "ce", "loss"} <= set(parts)

    total, parts = compute_loss(LossSpec(kind="mars", student="rgb", teacher="flow"), out, LABELS)
    sp = s.features["pooled"].reshape(B, T, C).mean(1)
    tp = t.features["pooled"].reshape(B, T, C).mean(1)
    ref, _ = mars_loss(s.video_logits, LABELS, sp, tp, alpha=50.0)
    assert total.item() == pytest.approx(ref.item(), rel=1e-6)
    total.backward()
    assert t.w.grad is None and s.w.grad is not None


def test_missing_stream_and_feature_errors():
    out = _out(names=("rgb", "hall"), fuse=("rgb",))
    with pytest.raises(KeyError, match="'depth'.*\\['hall', 'rgb'\\]"):
        compute_loss(LossSpec(kind="eq7"), out, LABELS)
    with pytest.raises(KeyError, match="layer1"):
        compute_loss(LossSpec(kind="hall", teacher="rgb", hall_layers={"layer1": 1.0}), out, LABELS)
    with pytest.raises(KeyError, match="feature 'nope'"):
        compute_loss(LossSpec(kind="mars", student="hall", teacher="rgb", mars_feature="nope"), out, LABELS)
    no_fused = SimpleNamespace(logits=None, streams=out.streams)
    with pytest.raises(ValueError, match="no fused logits"):
        compute_loss(LossSpec(kind="ce"), no_fused, LABELS)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": 1.5}, "alpha"),
        ({"lam": -0.1}, "lam"),
        ({"T": 0.0}, "T must be"),
        ({"kind": "eq8"}, "kind"),
        ({"kind": "eq7", "student": "depth"}, "different streams"),
        ({"kind": "eq7", "hall_layers": {}}, "hall_layers is empty"),
        ({"hall_layers": {"layer4": -1.0}}, "weights must be >= 0"),
        ({"kind": "relation", "relation_layers": {}}, "empty"),
    ],
)
def test_lossspec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossSpec(**kwargs)


def test_lossspec_from_config_with_overrides():
    spec = load_config(
        LossSpec,
        {"kind": "eq7", "hall_layers": {"layer3": 0.5, "layer4": 1.0}},
        ["alpha=0.7", "T=1e1", "student_temperature=true"],
    )
    assert spec == LossSpec(
        kind="eq7", hall_layers={"layer3": 0.5, "layer4": 1.0}, alpha=0.7, student_temperature=True
    )
    with pytest.raises(ConfigError, match="alpha"):
        load_config(LossSpec, {"alpha": 3})
    assert LossSpec(kind="hoffman").streams_needed() == {"rgb", "depth", "hall"}


def test_with_the_real_multistream_net_teacher_untouched():
    """Integration with modistill.models: eq. 7 trains only the student; no connections, so any gradient
    reaching the depth stream could only come from the loss."""
    from modistill.models import MultiStreamNet, StreamSpec

    torch.manual_seed(0)
    specs = {
        n: StreamSpec(backbone="resnet18", modality=m, width=0.125)
        for n, m in [("rgb", "rgb"), ("depth", "depth"), ("hall", "rgb")]
    }
    net = MultiStreamNet(streams=specs, num_classes=4, connections=[], fusion="mean", fuse=("rgb", "hall"))
    batch = {"rgb": torch.randn(2, 2, 3, 32, 32), "depth": torch.randn(2, 2, 3, 32, 32)}
    out = net(batch)
    loss, parts = compute_loss(
        LossSpec(kind="eq7", hall_layers={"layer1": 1.0, "layer4": 1.0}), out, LABELS % 4
    )
    loss.backward()
    assert all(p.grad is None for p in net.streams["depth"].parameters())
    assert all(p.grad is None for p in net.streams["rgb"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.streams["hall"].parameters())
    assert parts["hall/layer1"] > 0 and parts["gd/soft"] > 0
