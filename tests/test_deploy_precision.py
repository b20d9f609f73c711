"""The deployed model's dtype (modistill.deploy.precision): auto-selection from the CPU's flags (mocked both
ways), the bf16 module against fp32 on a tiny model, the refusals (unknown dtype, bf16 ONNX), and the BN
folding of the deployed streams (by hand, and the whole model against the unfolded one)."""

from __future__ import annotations

import copy

import pytest
import torch

from modistill.core.errors import ModistillError
from modistill.deploy import DeployedModel
from modistill.deploy import precision as P
from modistill.models import Connection, MultiStreamNet, StreamSpec
from modistill.models.fold import fold_conv_bn
from modistill.models.temporal import TemporalConv

# Excerpts of /proc/cpuinfo: a Sapphire-Rapids-class x86 (AMX + AVX-512 BF16), an AVX2-only x86, an ARM core.
X86_AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\nbogomips\t: 4000\n"
X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm bf16\n"


def test_cpu_flags_parsed_from_cpuinfo(tmp_path):
    for text, want in ((X86_AMX, {"avx512_bf16", "amx_bf16", "avx2"}), (ARM, {"asimd", "bf16"})):
        (tmp_path / "cpuinfo").write_text(text)
        assert want <= P.cpu_flags(tmp_path / "cpuinfo")
    assert P.cpu_flags(tmp_path / "missing") == frozenset()  # unreadable: no flags, so fp32


@pytest.mark.parametrize(
    ("cpuinfo", "want"),
    [(X86_AMX, "bf16"), (X86_AVX2, "fp32"), (ARM, "fp32"), ("", "fp32")],
)
def test_auto_picks_bf16_only_with_native_bf16(tmp_path, monkeypatch, cpuinfo, want):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    flags = P.cpu_flags(tmp_path / "cpuinfo")
    assert P.fastest_dtype("cpu", flags) == want
    # The default path reads the machine's flags through cpu_flags(): mock it both ways.
    monkeypatch.setattr(P, "cpu_flags", lambda: flags)
    assert P.resolve_dtype("auto") == want
    assert P.resolve_dtype("fp32") == "fp32" and P.resolve_dtype("bf16") == "bf16"  # forced: as asked


def test_either_bf16_flag_alone_is_enough():
    assert P.fastest_dtype("cpu", {"avx512f", "avx512_bf16"}) == "bf16"  # Cooper Lake / Zen 4: no AMX
    assert P.fastest_dtype("cpu", {"amx_bf16"}) == "bf16"
    assert P.fastest_dtype("cpu", {"avx512f", "avx512_fp16"}) == "fp32"  # fp16 is not bf16
    assert P.fastest_dtype("meta", {"amx_bf16"}) == "fp32"  # other devices: the safe choice


def test_is_native_per_dtype():
    """What the forward benchmark relates to a peak: fp32 always, bf16/fp16 only with their hardware."""
    avx2, zen4, spr = {"avx2"}, {"avx512f", "avx512_bf16"}, {"avx512_bf16", "avx512_fp16", "amx_bf16"}
    assert [P.is_native(d, avx2) for d in ("fp32", "bf16", "fp16")] == [True, False, False]
    assert [P.is_native(d, zen4) for d in ("fp32", "bf16", "fp16")] == [True, True, False]
    assert [P.is_native(d, spr) for d in ("fp32", "bf16", "fp16")] == [True, True, True]
    with pytest.raises(P.DeployDtypeError, match="expected one of fp32, bf16, fp16"):
        P.is_native("fp8", avx2)


def test_unknown_dtype_and_bf16_onnx_are_refused():
    with pytest.raises(P.DeployDtypeError, match="expected one of auto, fp32, bf16"):
        P.resolve_dtype("fp8")
    assert issubclass(P.DeployDtypeError, ModistillError) and issubclass(P.DeployDtypeError, ValueError)
    assert P.onnx_dtype("auto") == P.onnx_dtype("fp32") == "fp32"
    with pytest.raises(P.DeployDtypeError, match="onnxruntime"):
        P.onnx_dtype("bf16")
    with pytest.raises(P.DeployDtypeError, match="expected one of"):
        P.onnx_dtype("half")


def _tiny_deployed() -> DeployedModel:
    """Two RGB-reading streams with hall -> rgb connections and late fusion: step 4's shape, tiny."""
    torch.manual_seed(0)
    spec = StreamSpec(backbone="resnet18", modality="rgb", width=0.125)
    net = MultiStreamNet({"rgb": spec, "hall": spec}, 5, [Connection("hall", "rgb", (1, 2, 3, 4))])
    model = DeployedModel(net, ("rgb", "hall"))
    # Random init gives near-zero, near-tied logits; spread the classifier so the comparison means something.
    for stream in net.streams.values():
        torch.nn.init.normal_(stream.backbone.fc.weight, std=2.0)
    return model.eval()


def test_bf16_module_is_close_to_fp32_and_keeps_the_float32_interface():
    fp32 = P.prepare_module(_tiny_deployed(), "fp32")
    bf16 = P.prepare_module(copy.deepcopy(fp32), "bf16")
    assert fp32.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    conv = bf16.net.streams["rgb"].backbone.conv1.weight  # weights in channels_last, like the activations
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x = torch.randn(6, 3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref, got = fp32(x), bf16(x)
    assert got.dtype == torch.float32 and got.shape == ref.shape == (6, 5)
    scale = float(ref.abs().max())
    assert scale > 1.0
    # bf16 keeps 8 significant bits (relative rounding 2^-9 per value); through ~20 layers the logits stay within
    # a few percent of their scale, and well away from zero difference (it really ran in bf16).
    diff = float((got - ref).abs().max())
    assert 1e-4 * scale < diff < 0.05 * scale, (diff, scale)
    assert torch.equal(got.argmax(1), ref.argmax(1))


def test_fp32_preparation_changes_no_value():
    """channels_last weights are a layout change only: the fp32 deployed logits equal the network's."""
    model = _tiny_deployed()
    x = torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        before = model.net({"rgb": x}, streams=("rgb", "hall")).logits
        after = P.prepare_module(copy.deepcopy(model), "fp32")(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


def _randomise_bn_and_temporal(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine parameters, and temporal convs away from identity, so folding has
    something to get wrong."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                # Moderate values: wild ones make a deep ResNet's activations explode, and rounding with them.
                m.running_mean.copy_(0.5 * torch.randn(c, generator=g))
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(1 + 0.3 * torch.randn(c, generator=g))
                m.bias.copy_(0.3 * torch.randn(c, generator=g))
            elif isinstance(m, TemporalConv):
                m.weight.add_(0.2 * torch.randn(m.weight.shape, generator=g))


def test_fold_conv_bn_by_hand():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.arange(54, dtype=torch.float32).view(3, 2, 3, 3) / 10)
        bn.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]) - bn.eps)  # s = 2, 0.5, 1
        bn.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, 3.0]))
    f = fold_conv_bn(conv, bn)
    torch.testing.assert_close(f.weight[0], conv.weight[0] / 2)
    torch.testing.assert_close(f.weight[1], conv.weight[1] * 4)
    torch.testing.assert_close(f.weight[2], -conv.weight[2])
    # bias = beta - mu * gamma / s: 0 - 1/2, 1 + 2*4, 3 + 0.5
    torch.testing.assert_close(f.bias, torch.tensor([-0.5, 9.0, 3.5]))
    x = torch.randn(2, 2, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(f(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_folded_deployed_model_equals_the_unfolded_one(backbone):
    torch.manual_seed(0)
    spec = StreamSpec(backbone=backbone, modality="rgb", width=0.125)
    net = MultiStreamNet({"rgb": spec, "hall": spec}, 5, [Connection("hall", "rgb", (1, 2, 3, 4))])
    model = DeployedModel(net, ("rgb", "hall")).eval()
    _randomise_bn_and_temporal(model, 3)
    x = torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ref = model(x)
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    folded = P.prepare_module(copy.deepcopy(model), "fp32")
    left = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # Each stream keeps only the 4 BNs right after its temporal convs (one per stage).
    assert len(left) == 2 * 4 and bns > 2 * 16
    with torch.inference_mode():
        got = folded(x)
    scale = float(ref.abs().max())
    assert scale > 1.0
    assert float((got - ref).abs().max()) < 1e-5 * scale
    unfolded = P.prepare_module(copy.deepcopy(model), "fp32", fold_bn=False)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules()) == bns
