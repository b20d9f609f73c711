"""load_pretrained: formats, nesting/prefixes, classifier re-init, conv1 inflation, error reporting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modistill.core.errors import ModistillError
from modistill.models import (
    CheckpointError,
    MultiStreamNet,
    StreamSpec,
    VideoStream,
    create_model,
    load_pretrained,
    read_state_dict,
)

WIDTH = 0.25  # same key names as torchvision at any width; small tensors keep the files tiny


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def source_state(name: str = "resnet18", num_classes: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    """An 'ImageNet' checkpoint stand-in: random weights and BN statistics in torchvision naming."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes, width=WIDTH)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.num_batches_tracked.fill_(123)
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_loaded(model: nn.Module, sd: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    own = model.state_dict()
    for k, v in sd.items():
        if k not in skip:
            assert torch.equal(own[k], v), k


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    sd = source_state()
    path = tmp_path / f"r18{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        save_file(sd, str(path))
    model = create_model("resnet18", num_classes=1000, width=WIDTH)
    report = load_pretrained(model, path)
    assert_loaded(model, sd)
    assert report.reinitialised == [] and report.inflated == [] and report.kept == []
    assert report.loaded == len(sd)
    ref = create_model("resnet18", num_classes=1000, width=WIDTH)
    ref.load_state_dict(sd)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), ref.eval()(x))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"module." + k: v for k, v in sd.items()},  # DataParallel / DDP
        lambda sd: {"model." + k: v for k, v in sd.items()},  # timm / lightning style wrapper
        lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 7, "arch": "resnet18"},
        lambda sd: {"model": {"model.module." + k: v for k, v in sd.items()}, "optimizer": {"lr": 0.1}},
    ],
    ids=["module.", "model.", "state_dict-nested", "model-nested-double-prefix"],
)
def test_prefixed_and_nested_checkpoints(tmp_path: Path, wrap) -> None:
    sd = source_state()
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(sd), path)
    assert set(read_state_dict(path)) == set(sd)
    model = create_model("resnet18", num_classes=1000, width=WIDTH)
    load_pretrained(model, path)
    assert_loaded(model, sd)


def test_missing_num_batches_tracked_is_tolerated(tmp_path: Path) -> None:
    sd = {k: v for k, v in source_state().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "timm_like.safetensors"
    save_file(sd, str(path))
    model = create_model("resnet18", num_classes=1000, width=WIDTH)
    report = load_pretrained(model, path)
    assert_loaded(model, sd)
    assert report.kept and all(k.endswith("num_batches_tracked") for k in report.kept)


def test_classifier_reinitialised_on_class_count_change(tmp_path: Path) -> None:
    sd = source_state(num_classes=1000)
    path = tmp_path / "in1k.pth"
    torch.save(sd, path)
    torch.manual_seed(5)
    model = create_model("resnet18", num_classes=7, width=WIDTH)
    fc_before = model.fc.weight.detach().clone()
    report = load_pretrained(model, path)
    assert sorted(report.reinitialised) == ["fc.bias", "fc.weight"]
    assert model.fc.weight.shape == (7, sd["fc.weight"].shape[1])
    assert not torch.equal(model.fc.weight, fc_before)  # freshly re-initialised, not the old values
    bound = 1 / sd["fc.weight"].shape[1] ** 0.5  # nn.Linear's default init range
    assert model.fc.weight.abs().max() <= bound
    assert_loaded(model, sd, skip=("fc.weight", "fc.bias"))


@pytest.mark.parametrize("in_channels", [1, 2, 6])
def test_conv1_inflation(tmp_path: Path, in_channels: int) -> None:
    sd = source_state()
    path = tmp_path / "in1k.pth"
    torch.save(sd, path)
    model = create_model("resnet18", num_classes=1000, in_channels=in_channels, width=WIDTH)
    report = load_pretrained(model, path)
    assert report.inflated == ["conv1.weight"]
    w = sd["conv1.weight"]
    expected = w.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
    assert torch.allclose(model.conv1.weight, expected)
    # By hand on one filter: RGB taps 1, 2, 6 -> every inflated channel gets (1 + 2 + 6) / 3 = 3.
    w2 = w.clone()
    w2[0, :, 0, 0] = torch.tensor([1.0, 2.0, 6.0])
    torch.save(dict(sd, **{"conv1.weight": w2}), path)
    load_pretrained(model, path)
    assert torch.equal(model.conv1.weight[0, :, 0, 0], torch.full((in_channels,), 3.0))
    assert_loaded(model, sd, skip=("conv1.weight",))


def test_error_lists_missing_unexpected_and_misshaped(tmp_path: Path) -> None:
    sd = source_state()
    del sd["layer1.0.bn1.weight"]
    sd["extra.head.weight"] = torch.zeros(3)
    sd["layer2.0.conv1.weight"] = torch.zeros(5, 5, 3, 3)
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    model = create_model("resnet18", num_classes=1000, width=WIDTH)
    with pytest.raises(ValueError) as info:
        load_pretrained(model, path)
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, ModistillError)
    msg = str(info.value)
    assert "broken.pth" in msg
    assert "missing (1): layer1.0.bn1.weight" in msg
    assert "unexpected (1): extra.head.weight" in msg
    assert "mis-shaped (1): layer2.0.conv1.weight: file (5, 5, 3, 3)" in msg


def test_other_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.pth") as info:
        load_pretrained(create_model("resnet18", width=WIDTH), tmp_path / "nothere.pth")
    assert isinstance(info.value, ModistillError)
    bad = tmp_path / "list.pth"
    torch.save([1, 2, 3], bad)
    with pytest.raises(ValueError, match="list.pth.*expected a dict"):
        load_pretrained(create_model("resnet18", width=WIDTH), bad)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_pretrained(create_model("resnet18", width=WIDTH), garbage)
    with pytest.raises(TypeError, match="ResNet or a VideoStream"):
        load_pretrained(nn.Linear(2, 2), garbage)
    # A resnet50 checkpoint does not fit a resnet18: a clear error, not a partial load.
    r50 = tmp_path / "r50.pth"
    torch.save(source_state("resnet50"), r50)
    with pytest.raises(ValueError, match="unexpected"):
        load_pretrained(create_model("resnet18", width=WIDTH), r50)


def test_video_stream_loading_keeps_temporal_identity(tmp_path: Path) -> None:
    sd = source_state("resnet50")
    path = tmp_path / "r50.safetensors"
    save_file(sd, str(path))
    stream = VideoStream("resnet50", num_classes=12, in_channels=3, width=WIDTH)
    report = load_pretrained(stream, path)
    assert sorted(report.reinitialised) == ["fc.bias", "fc.weight"]
    assert_loaded(stream.backbone, sd, skip=("fc.weight", "fc.bias"))
    assert all(tc.is_identity() for tc in stream.temporal.values())
    stream.eval()
    clips = torch.randn(1, 3, 3, 32, 32)
    frames = stream.backbone(clips.reshape(3, 3, 32, 32))
    scale = frames.abs().max().item()  # random BN statistics give large logits; compare relative to them
    assert torch.allclose(stream(clips).frame_logits[0], frames, atol=1e-5 * scale, rtol=1e-5)


def test_streams_load_pretrained_explicitly(tmp_path: Path) -> None:
    """Construction never loads weights; ``load_pretrained(net.streams[name], path)`` does, per stream."""
    sd = source_state()
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    assert "pretrained" not in {f.name for f in dataclasses.fields(StreamSpec)}
    torch.manual_seed(0)
    net = MultiStreamNet(
        {
            "rgb": StreamSpec("resnet18", "rgb", WIDTH),
            "flow": StreamSpec("resnet18", "flow", WIDTH, in_channels=2),
        },
        num_classes=5,
    )
    torch.manual_seed(0)
    fresh = create_model("resnet18", num_classes=5, width=WIDTH)  # the rgb stream's backbone draws first
    assert_loaded(net.streams["rgb"].backbone, fresh.state_dict())  # random init, nothing loaded
    load_pretrained(net.streams["rgb"], path)
    report = load_pretrained(net.streams["flow"], path)
    assert report.inflated == ["conv1.weight"]
    assert_loaded(net.streams["rgb"].backbone, sd, skip=("fc.weight", "fc.bias"))
    assert_loaded(net.streams["flow"].backbone, sd, skip=("fc.weight", "fc.bias", "conv1.weight"))
    assert net.streams["flow"].backbone.conv1.weight.shape[1] == 2
