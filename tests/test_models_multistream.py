"""MultiStreamNet: eq. 2 by hand (both variants; the tensor functions and the network), independence, freezing,
gradient flow, fusion, overfit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modistill.models import (
    Connection,
    MultiStreamNet,
    StreamSpec,
    create_fusion,
    fusion_registry,
    list_fusions,
    register_fusion,
)
from modistill.models.connections import connection_branch, eq2_paper, eq2_released


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster and avoids oversubscribing a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def randomize(model: nn.Module, seed: int = 0) -> None:
    """Random BN statistics/affine and random temporal taps, so nothing below holds by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif name.endswith(tuple(f"temporal.layer{i}" for i in range(1, 5))):
                m.weight.add_(torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype) * 0.2)


def two_stream(variant: str = "paper", stages=(1, 2, 3, 4), connect: bool = True, width: float = 0.125):
    specs = {
        "rgb": StreamSpec("resnet18", "rgb", width),
        "depth": StreamSpec("resnet18", "depth", width),
    }
    conns = [Connection("depth", "rgb", stages, variant)] if connect else []
    return MultiStreamNet(specs, num_classes=5, connections=conns)


def batch(
    b: int = 2, t: int = 3, size: int = 32, dtype=torch.float32, seed: int = 0
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(b, t, 3, size, size, generator=g, dtype=dtype) for m in ("rgb", "depth")}


# ---------------------------------------------------------------------------------------------- by hand
def _temporal(x: torch.Tensor, w: torch.Tensor, t: int) -> torch.Tensor:
    n, c, h, wd = x.shape
    xb = x.reshape(n // t, t, c, h, wd)
    y = torch.zeros_like(xb)
    for i in range(t):
        for k in range(3):
            s = i + k - 1
            if 0 <= s < t:
                y[:, i] += torch.einsum("oc,bchw->bohw", w[:, :, k, 0], xb[:, s])
    return y.reshape(n, c, h, wd)


def _basic_residual(u: nn.Module, x: torch.Tensor, tw: torch.Tensor | None, t: int) -> torch.Tensor:
    r = u.conv1(x)
    if tw is not None:
        r = _temporal(r, tw, t)
    return u.bn2(u.conv2(F.relu(u.bn1(r))))


def _basic_skip(u: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x if u.downsample is None else u.downsample(x)


def hand_forward(net: MultiStreamNet, b: dict[str, torch.Tensor], conn: Connection | None):
    """Both ResNet-18 streams written out unit by unit, eq. 2 applied explicitly (REF §1)."""
    t = b["rgb"].shape[1]
    x = {}
    for n in ("rgb", "depth"):
        bb = net.streams[n].backbone
        frames = b[n].flatten(0, 1)
        x[n] = F.max_pool2d(F.relu(bb.bn1(bb.conv1(frames))), 3, 2, 1)
    feats = {"rgb": {}, "depth": {}}
    for s in range(1, 5):
        pre = {}
        for n in ("rgb", "depth"):
            u0 = net.streams[n].backbone.stages()[s - 1][0]
            pre[n] = _basic_skip(u0, x[n]) + _basic_residual(u0, x[n], None, t)  # unit 1, before its ReLU
        for n in ("rgb", "depth"):
            u1 = net.streams[n].backbone.stages()[s - 1][1]
            tw = net.streams[n].temporal[f"layer{s}"].weight
            a = pre[n]
            skip = F.relu(a)  # unit 2's skip path: the ordinary unit-1 output
            branch = skip
            if conn is not None and n == conn.target and s in conn.stages:
                m = F.relu(pre[conn.source])
                branch = a * m if conn.variant == "paper" else F.relu(a) + a * m
            x[n] = F.relu(skip + _basic_residual(u1, branch, tw, t))
            feats[n][f"layer{s}"] = x[n]
    logits = {}
    for n in ("rgb", "depth"):
        fc = net.streams[n].backbone.fc
        logits[n] = fc(x[n].mean(dim=(2, 3))).view(b[n].shape[0], t, -1)
    return feats, logits


# Eq. 2 on tiny tensors, expected values written out by hand. a = target unit-1 output before its ReLU,
# m = source unit-1 output after its ReLU; shape (B*T, C, H, W) = (2, 1, 1, 3).
EQ2_A = [[[[-2.0, 0.5, 3.0]]], [[[1.5, -1.0, 0.0]]]]
EQ2_M = [[[[1.0, 4.0, 0.0]]], [[[2.0, 0.5, 3.0]]]]


def test_eq2_paper_by_hand() -> None:
    a, m = torch.tensor(EQ2_A, requires_grad=True), torch.tensor(EQ2_M, requires_grad=True)
    out = eq2_paper(a, m)
    # a * m: -2*1, 0.5*4, 3*0 | 1.5*2, -1*0.5, 0*3
    assert torch.equal(out, torch.tensor([[[[-2.0, 2.0, 0.0]]], [[[3.0, -0.5, 0.0]]]]))
    assert out.shape == (2, 1, 1, 3)
    out.sum().backward()
    assert torch.equal(a.grad, torch.tensor(EQ2_M))  # d(a*m)/da = m
    assert torch.equal(m.grad, torch.tensor(EQ2_A))  # d(a*m)/dm = a: the source gets gradient through m


def test_eq2_released_by_hand() -> None:
    a, m = torch.tensor(EQ2_A, requires_grad=True), torch.tensor(EQ2_M, requires_grad=True)
    out = eq2_released(a, m)
    # relu(a) + a * m: 0 + -2, 0.5 + 2, 3 + 0 | 1.5 + 3, 0 + -0.5, 0 + 0
    expected = torch.tensor([[[[-2.0, 2.5, 3.0]]], [[[4.5, -0.5, 0.0]]]])
    assert torch.equal(out, expected)
    out.sum().backward()
    # d/da = 1[a > 0] + m: 0+1, 1+4, 1+0 | 1+2, 0+0.5, 0+3 (relu'(0) = 0 in torch)
    assert torch.equal(a.grad, torch.tensor([[[[1.0, 5.0, 1.0]]], [[[3.0, 0.5, 3.0]]]]))
    assert torch.equal(m.grad, torch.tensor(EQ2_A))
    # A precomputed relu(a) (what the network passes: unit 2's skip input) gives the same values.
    relu_a = torch.tensor([[[[0.0, 0.5, 3.0]]], [[[1.5, 0.0, 0.0]]]])
    assert torch.equal(eq2_released(torch.tensor(EQ2_A), torch.tensor(EQ2_M), relu_a), expected)


def test_connection_branch_dispatch() -> None:
    a, m = torch.tensor(EQ2_A), torch.tensor(EQ2_M)
    assert torch.equal(
        connection_branch("paper", a, m), torch.tensor([[[[-2.0, 2.0, 0.0]]], [[[3.0, -0.5, 0.0]]]])
    )
    assert torch.equal(
        connection_branch("released", a, m), torch.tensor([[[[-2.0, 2.5, 3.0]]], [[[4.5, -0.5, 0.0]]]])
    )
    with pytest.raises(ValueError, match="variant"):
        connection_branch("sum", a, m)


@pytest.mark.parametrize("variant", ["paper", "released"])
def test_eq2_matches_hand_computation(variant: str) -> None:
    torch.manual_seed(0)
    conn = Connection("depth", "rgb", stages=(1, 3), variant=variant)  # stages 2 and 4 stay unconnected
    net = MultiStreamNet(
        {"rgb": StreamSpec("resnet18", "rgb", 0.125), "depth": StreamSpec("resnet18", "depth", 0.125)},
        num_classes=4,
        connections=[conn],
    ).double()
    randomize(net)
    net.eval()
    b = batch(dtype=torch.float64)
    out = net(b)
    feats, logits = hand_forward(net, b, conn)
    for n in ("rgb", "depth"):
        for s in range(1, 5):
            assert torch.allclose(out.streams[n].features[f"layer{s}"], feats[n][f"layer{s}"], atol=1e-10), (
                n,
                s,
            )
        assert torch.allclose(out.streams[n].frame_logits, logits[n], atol=1e-10)
    assert torch.allclose(out.logits, (logits["rgb"].mean(1) + logits["depth"].mean(1)) / 2, atol=1e-10)
    # The connection matters: without it the hand computation gives a different rgb result.
    _, plain = hand_forward(net, b, None)
    assert not torch.allclose(plain["rgb"], logits["rgb"], atol=1e-4)
    assert torch.allclose(plain["depth"], logits["depth"], atol=1e-10)  # the source is not changed by it


def test_variants_differ() -> None:
    torch.manual_seed(0)
    paper = two_stream("paper").eval()
    released = two_stream("released").eval()
    released.load_state_dict(paper.state_dict())
    b = batch()
    assert not torch.allclose(paper(b).logits, released(b).logits, atol=1e-4)


def test_no_connection_means_independent_streams() -> None:
    torch.manual_seed(0)
    net = two_stream(connect=False)
    randomize(net)
    net.eval()
    b = batch()
    out = net(b)
    for n in ("rgb", "depth"):
        alone = net.streams[n](b[n])  # the stream on its own
        assert torch.allclose(out.streams[n].frame_logits, alone.frame_logits, atol=1e-6)
    # Changing depth input leaves rgb untouched.
    b2 = dict(b, depth=b["depth"] + 1.0)
    assert torch.allclose(net(b2).streams["rgb"].video_logits, out.streams["rgb"].video_logits, atol=1e-6)


def test_connection_active_only_when_both_ends_run() -> None:
    torch.manual_seed(0)
    net = two_stream()
    net.eval()
    b = batch()
    rgb_only = net({"rgb": b["rgb"]}, streams=["rgb"])
    alone = net.streams["rgb"](b["rgb"])
    assert torch.allclose(rgb_only.streams["rgb"].frame_logits, alone.frame_logits, atol=1e-6)
    assert rgb_only.fused == ("rgb",)
    assert torch.allclose(rgb_only.logits, rgb_only.streams["rgb"].video_logits)
    both = net(b)
    assert not torch.allclose(both.streams["rgb"].video_logits, alone.video_logits, atol=1e-4)
    assert net.active_connections(["rgb"]) == []


def test_missing_modality_and_bad_requests() -> None:
    net = two_stream()
    b = batch()
    with pytest.raises(KeyError, match="stream 'depth' reads modality 'depth'.*batch keys"):
        net({"rgb": b["rgb"]})
    with pytest.raises(KeyError, match="unknown stream 'flow'"):
        net(b, streams=["flow"])
    with pytest.raises(ValueError, match="differ in \\(B, T\\)"):
        net({"rgb": b["rgb"], "depth": b["depth"][:, :2]})
    with pytest.raises(ValueError, match="feature shapes differ"):
        net({"rgb": b["rgb"], "depth": torch.randn(2, 3, 3, 64, 64)})


def test_construction_errors() -> None:
    specs = {
        "rgb": StreamSpec("resnet18", "rgb", 0.125),
        "depth": StreamSpec("resnet18", "depth", 0.125),
        "flow": StreamSpec("resnet18", "flow", 0.125, in_channels=2),
        "wide": StreamSpec("resnet18", "rgb", 0.25),
    }
    with pytest.raises(ValueError, match="one source per target and stage"):
        MultiStreamNet(specs, 3, [Connection("depth", "rgb"), Connection("flow", "rgb", (4,))])
    # Different stages from two sources are fine.
    MultiStreamNet(specs, 3, [Connection("depth", "rgb", (1, 2)), Connection("flow", "rgb", (3, 4))])
    with pytest.raises(ValueError, match="channel counts differ"):
        MultiStreamNet(specs, 3, [Connection("wide", "rgb")])
    with pytest.raises(ValueError, match="unknown stream 'nope'"):
        MultiStreamNet(specs, 3, [Connection("nope", "rgb")])
    with pytest.raises(ValueError, match="variant"):
        Connection("depth", "rgb", variant="sum")
    with pytest.raises(ValueError, match="stages"):
        Connection("depth", "rgb", stages=(0, 5))
    with pytest.raises(ValueError, match="same stream"):
        Connection("rgb", "rgb")
    with pytest.raises(ValueError, match="fuse"):
        MultiStreamNet(specs, 3, fuse=("rgb", "missing"))
    with pytest.raises(KeyError, match="unknown fusion"):
        MultiStreamNet(specs, 3, fusion="nonexistent")


def test_chain_and_inverted_direction() -> None:
    """depth -> hall -> rgb (a stream both source and target) and rgb -> depth both run and differ."""
    torch.manual_seed(0)
    specs = {
        m: StreamSpec("resnet18", "depth" if m == "depth" else "rgb", 0.125) for m in ("rgb", "depth", "hall")
    }
    chain = MultiStreamNet(specs, 4, [Connection("depth", "hall"), Connection("hall", "rgb")]).eval()
    b = batch()
    out = chain(b)
    assert set(out.streams) == {"rgb", "depth", "hall"}
    assert out.logits.shape == (2, 4)
    inverted = MultiStreamNet(specs, 4, [Connection("rgb", "depth")]).eval()
    inverted.load_state_dict(chain.state_dict())
    o2 = inverted(b)
    assert torch.allclose(
        o2.streams["rgb"].video_logits, chain.streams["rgb"](b["rgb"]).video_logits, atol=1e-6
    )
    assert not torch.allclose(o2.streams["depth"].video_logits, out.streams["depth"].video_logits, atol=1e-4)


# ------------------------------------------------------------------------------------ freezing and gradients
def _bn_stats(module: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for n, t in module.state_dict().items() if "running" in n or "num_batches" in n]


def test_frozen_source_gets_no_gradient_and_keeps_bn_stats() -> None:
    torch.manual_seed(0)
    net = two_stream()
    net.freeze("depth")
    net.train()
    assert net.frozen == {"depth"}
    assert not net.streams["depth"].training and net.streams["rgb"].training
    before_depth, before_rgb = _bn_stats(net.streams["depth"]), _bn_stats(net.streams["rgb"])
    out = net(batch())
    F.cross_entropy(out.logits, torch.tensor([0, 1])).backward()
    assert all(p.grad is None for p in net.streams["depth"].parameters())
    assert all(p.grad is not None for p in net.streams["rgb"].parameters())
    assert all(torch.equal(a, b) for a, b in zip(before_depth, _bn_stats(net.streams["depth"])))
    assert not all(torch.equal(a, b) for a, b in zip(before_rgb, _bn_stats(net.streams["rgb"])))
    net.unfreeze("depth")
    assert net.frozen == set() and net.streams["depth"].training
    assert all(p.requires_grad for p in net.streams["depth"].parameters())


def test_unfrozen_source_gets_gradient_through_the_product() -> None:
    torch.manual_seed(0)
    b = batch()
    for connect in (True, False):
        net = two_stream(connect=connect)
        net.freeze("rgb")  # frozen target: gradient must still pass through it to the source
        net.train()
        before = _bn_stats(net.streams["rgb"])
        out = net(b, streams=["rgb", "depth"])
        loss = out.streams["rgb"].video_logits.square().sum()  # a loss on the target only
        if connect:
            loss.backward()
            grad = net.streams["depth"].backbone.layer1[0].conv1.weight.grad
            assert grad is not None and grad.abs().sum() > 0
            assert net.streams["depth"].backbone.fc.weight.grad is None  # depth's head is not on the path
        else:
            assert not loss.requires_grad  # no connection: no path from the rgb loss into anything trainable
        assert all(p.grad is None for p in net.streams["rgb"].parameters())
        assert all(torch.equal(x, y) for x, y in zip(before, _bn_stats(net.streams["rgb"])))


def test_stream_state_dicts_are_interchangeable() -> None:
    """Stage hand-over (REF §3 step 3): a hallucination stream initialised from the depth stream's weights."""
    net = two_stream()
    specs = {"rgb": StreamSpec("resnet18", "rgb", 0.125), "hall": StreamSpec("resnet18", "rgb", 0.125)}
    student = MultiStreamNet(specs, 5, [Connection("hall", "rgb")])
    student.streams["hall"].load_state_dict(net.streams["depth"].state_dict())
    x = batch()["rgb"]
    net.eval(), student.eval()
    assert torch.allclose(student.streams["hall"](x).video_logits, net.streams["depth"](x).video_logits)


# ------------------------------------------------------------------------------------------------- fusion
def test_fusion_mean_and_fuse_subset() -> None:
    torch.manual_seed(0)
    specs = {m: StreamSpec("resnet18", "rgb", 0.125) for m in ("a", "b", "c")}
    net = MultiStreamNet(specs, 3, fuse=("a", "c")).eval()
    b = {"rgb": torch.randn(2, 2, 3, 32, 32)}
    out = net(b)
    v = {n: out.streams[n].video_logits for n in "abc"}
    assert torch.allclose(out.logits, (v["a"] + v["c"]) / 2)
    only_b = net(b, streams=["b"])  # no fused stream run: mean over the run ones
    assert only_b.fused == () and torch.allclose(only_b.logits, only_b.streams["b"].video_logits)
    assert "mean" in list_fusions()


def test_learned_fusion_plugs_in() -> None:
    name = "test_models_weighted"
    try:

        @register_fusion(name)
        class Weighted(nn.Module):
            def __init__(self, *, streams, num_classes, feature_dims, scale: float = 1.0):
                super().__init__()
                self.streams = streams
                self.w = nn.Parameter(torch.zeros(len(streams)))
                self.head = nn.Linear(sum(feature_dims.values()), num_classes)
                self.scale = scale

            def forward(self, outputs):
                b, t = next(iter(outputs.values())).frame_logits.shape[:2]
                pooled = [o.features["pooled"].view(b, t, -1).mean(1) for o in outputs.values()]
                return self.scale * self.head(torch.cat(pooled, 1))

        with pytest.raises(ValueError, match="already registered"):
            register_fusion(name)(Weighted)
        net = two_stream()
        specs = net.specs
        learned = MultiStreamNet(specs, 5, fusion=name, fusion_options={"scale": 2.0})
        assert any(k.startswith("fusion.") for k in learned.state_dict())
        out = learned(batch())
        assert out.logits.shape == (2, 5)
        out.logits.sum().backward()
        assert learned.fusion.head.weight.grad is not None
        assert learned.streams["depth"].backbone.layer4[1].conv2.weight.grad is not None
        direct = create_fusion(name, streams=("rgb",), num_classes=5, feature_dims={"rgb": 64})
        assert direct.head.in_features == 64
    finally:
        fusion_registry._FUSIONS.pop(name, None)


# ------------------------------------------------------------------------------------------------ overfit
def test_tiny_two_stream_overfits() -> None:
    torch.manual_seed(0)
    net = two_stream(width=0.125)
    net.train()
    g = torch.Generator().manual_seed(1)
    b = {m: torch.randn(8, 2, 3, 32, 32, generator=g) for m in ("rgb", "depth")}
    y = torch.arange(8) % 4
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(net(b).logits, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses
