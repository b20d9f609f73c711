"""2D ResNets: torchvision parity (keys, shapes, parameter counts), forward semantics, registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modistill.models import (
    MultiStreamNet,
    ResNet,
    VideoStream,
    create_model,
    list_models,
    register_model,
)
from modistill.models import registry as registry_mod

REPO = Path(__file__).resolve().parent.parent
REF_JSON = Path(
    os.environ.get(
        "MODISTILL_TORCHVISION_REF",
        REPO.parent / "shared" / "reference" / "torchvision_resnet_state_dict.json",
    )
)
LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster and avoids oversubscribing a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode equivalences are not vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module")
def torchvision_ref() -> dict:
    if not REF_JSON.is_file():
        pytest.skip(f"torchvision reference state_dict listing not found at {REF_JSON}")
    return json.loads(REF_JSON.read_text())


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_torchvision_key_shape_and_param_parity(name: str, torchvision_ref: dict) -> None:
    ref = torchvision_ref[name]
    with torch.device("meta"):  # build only: shapes and counts need no memory
        model = create_model(name, num_classes=1000)
    state = model.state_dict()
    assert list(state) == list(ref["state"])  # same keys, same order (incl. num_batches_tracked)
    for key, shape in ref["state"].items():
        assert list(state[key].shape) == shape, key
    assert sum(p.numel() for p in model.parameters()) == ref["params"]


def test_resnet50_param_count_literal() -> None:
    with torch.device("meta"):
        model = create_model("resnet50", num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision's documented count


def _reference_forward(
    sd: dict[str, torch.Tensor], x: torch.Tensor, layers, bottleneck: bool
) -> torch.Tensor:
    """torchvision's ResNet forward in eval mode written out with functional ops from a state_dict."""

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            t,
            sd[p + ".running_mean"],
            sd[p + ".running_var"],
            sd[p + ".weight"],
            sd[p + ".bias"],
            False,
            0.0,
            1e-5,
        )

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for li, n in enumerate(layers, start=1):
        for u in range(n):
            p = f"layer{li}.{u}"
            stride = 2 if (u == 0 and li > 1) else 1
            if bottleneck:  # v1.5: the stride sits on the 3x3 conv
                out = F.relu(bn(F.conv2d(x, sd[p + ".conv1.weight"]), p + ".bn1"))
                out = F.relu(bn(F.conv2d(out, sd[p + ".conv2.weight"], stride=stride, padding=1), p + ".bn2"))
                out = bn(F.conv2d(out, sd[p + ".conv3.weight"]), p + ".bn3")
            else:
                out = F.relu(bn(F.conv2d(x, sd[p + ".conv1.weight"], stride=stride, padding=1), p + ".bn1"))
                out = bn(F.conv2d(out, sd[p + ".conv2.weight"], padding=1), p + ".bn2")
            if p + ".downsample.0.weight" in sd:
                sc = bn(F.conv2d(x, sd[p + ".downsample.0.weight"], stride=stride), p + ".downsample.1")
            else:
                sc = x
            x = F.relu(out + sc)
    x = x.mean(dim=(2, 3))
    return x @ sd["fc.weight"].T + sd["fc.bias"]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_forward_matches_functional_torchvision_semantics(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, width=0.125).double().eval()
    randomize_bn(model)
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    ref = _reference_forward(model.state_dict(), x, LAYERS[name], bottleneck=name == "resnet50")
    assert torch.allclose(model(x), ref, atol=1e-10, rtol=1e-9)


def test_width_and_in_channels() -> None:
    m = create_model("resnet18", num_classes=10, in_channels=2, width=0.25)
    assert m.conv1.weight.shape == (16, 2, 7, 7)  # width 0.25 -> 16 base channels
    assert m.stage_channels() == (16, 32, 64, 128)
    assert create_model("resnet50", width=0.25).stage_channels() == (64, 128, 256, 512)
    assert m(torch.randn(3, 2, 32, 32)).shape == (3, 10)
    with pytest.raises(ValueError, match="width"):
        create_model("resnet18", width=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        m(torch.randn(1, 2, 2, 32, 32))


def test_registry_lists_and_errors() -> None:
    names = list_models()
    assert names == sorted(names)
    for required in ("resnet18", "resnet34", "resnet50", "stream_resnet18", "twostream_resnet18"):
        assert required in names
    with pytest.raises(KeyError, match="unknown model 'resnet99'.*resnet18"):
        create_model("resnet99")
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18")(lambda **kw: nn.Identity())
    try:

        @register_model("test_models_dummy")
        def dummy(num_classes: int = 3, width: float = 1.0) -> nn.Module:
            return nn.Linear(2, num_classes)

        assert "test_models_dummy" in list_models()
        assert create_model("test_models_dummy", num_classes=4).out_features == 4
    finally:
        registry_mod._MODELS.pop("test_models_dummy", None)


# Two input configurations per registered model: (B, T, H, W).
SWEEP = [(2, 2, 32, 32), (1, 3, 48, 64)]


@pytest.mark.parametrize("name", list_models())
def test_registry_shape_sweep(name: str) -> None:
    torch.manual_seed(0)
    k = 5
    model = create_model(name, num_classes=k, width=0.125)
    model.eval()
    for b, t, h, w in SWEEP:
        with torch.no_grad():
            if isinstance(model, ResNet):
                assert model(torch.randn(b * t, 3, h, w)).shape == (b * t, k)
            elif isinstance(model, VideoStream):
                out = model(torch.randn(b, t, 3, h, w))
                assert out.frame_logits.shape == (b, t, k)
                assert out.video_logits.shape == (b, k)
                _check_features(out.features, b * t, model.backbone.stage_channels(), h, w)
            elif isinstance(model, MultiStreamNet):
                batch = {
                    spec.modality: torch.randn(b, t, spec.in_channels, h, w) for spec in model.specs.values()
                }
                out = model(batch)
                assert out.logits.shape == (b, k)
                for n, so in out.streams.items():
                    assert so.video_logits.shape == (b, k)
                    assert so.frame_logits.shape == (b, t, k)
                    _check_features(so.features, b * t, model.streams[n].backbone.stage_channels(), h, w)
            else:
                pytest.fail(f"registered model {name!r} has an unknown type {type(model).__name__}")


def _check_features(feats: dict, n: int, channels: tuple, h: int, w: int) -> None:
    assert set(feats) == {"layer1", "layer2", "layer3", "layer4", "pooled"}
    size_h, size_w = -(-h // 4), -(-w // 4)  # stem: stride 2 conv + stride 2 pool (ceil)
    for i, c in enumerate(channels):
        assert feats[f"layer{i + 1}"].shape == (n, c, size_h, size_w)
        size_h, size_w = -(-size_h // 2), -(-size_w // 2)
    assert feats["pooled"].shape == (n, channels[-1])
