"""Input feeding and parameter layout: uint8 batches normalised on the device give exactly the host-normalised
values (training, evaluation with several clips, flow); channels_last models train with channels_last
parameters (no DDP gradient-stride mismatch) and a resume keeps the optimizer state in the same layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from modistill.core.atomic import save_array_atomic
from modistill.data import cache as C
from modistill.data.dataset import CachedClipDataset
from modistill.data.normalize import BatchNormalizer, normalize_flow_frames
from modistill.engine import TrainConfig, evaluate, train_stage
from modistill.engine.utils import match_memory_format
from modistill.pipeline.session import StackedClips

NAMES = [f"S001C001P{p:03d}R001A{a:03d}" for p in (1, 2, 3) for a in (1, 2)]


def random_cache(root: Path, modalities=("rgb", "depth"), frames: int = 6, size: int = 16) -> Path:
    """A cache written through the storage API with random uint8 frames (every value 0..255 occurs)."""
    rng = np.random.default_rng(0)
    C.CacheConfig(size=size, frames=frames, source="test", num_classes=2, modalities=modalities).write(
        root / C.CONFIG_NAME
    )
    with C.JsonlAppender(C.index_path(root)) as idx:
        for n in NAMES:
            for m in modalities:
                ch = 2 if m == "flow" else 3
                save_array_atomic(
                    C.array_path(root, m, n), rng.integers(0, 256, (frames, size, size, ch), np.uint8)
                )
            idx.append(
                {"name": n, "label": int(n[-1]) - 1, "frames": frames, "source_frames": list(range(frames))}
            )
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return random_cache(tmp_path_factory.mktemp("feed"), ("rgb", "depth", "flow"))


def _pair(cache: Path, **kw):
    mods = kw.pop("modalities", ("rgb", "depth", "flow"))
    return (
        CachedClipDataset(cache, None, frames=3, modalities=mods, **kw),
        CachedClipDataset(cache, None, frames=3, modalities=mods, output="uint8", **kw),
    )


def test_uint8_batches_normalised_on_device_equal_host_items(cache: Path) -> None:
    host, raw = _pair(cache, train=True, seed=5)
    for ds in (host, raw):
        ds.set_epoch(3)
    item = raw[1]
    assert item["rgb"].dtype == torch.uint8 and item["rgb"].shape == (3, 16, 16, 3)
    assert item["flow"].shape == (3, 16, 16, 2)
    assert host.device_transform is None and isinstance(raw.device_transform, BatchNormalizer)
    flipped = [raw.item_indices(i)[1] for i in range(len(raw))]
    assert any(flipped) and not all(flipped)  # both branches of the shared flip are covered
    a = default_collate([host[i] for i in range(len(host))])
    b = raw.device_transform(default_collate([raw[i] for i in range(len(raw))]))
    for m in ("rgb", "depth", "flow"):
        assert b[m].dtype == torch.float32 and b[m].shape == a[m].shape
        assert torch.equal(a[m], b[m]), m  # bit-identical on the CPU: the same element-wise operations
    assert torch.equal(a["label"], b["label"]) and a["sample"] == b["sample"]
    # Same memory layout as the host batches (channels-last strides): the model sees the same tensors.
    assert b["rgb"].stride() == a["rgb"].stride()


def test_flow_normalisation_is_the_one_definition() -> None:
    from modistill.data.flow import flow_to_tensor

    q = torch.arange(256, dtype=torch.uint8).repeat(2 * 4).reshape(2, 16, 16, 4)
    assert torch.equal(flow_to_tensor(q), normalize_flow_frames(q).contiguous())
    assert float(normalize_flow_frames(q).min()) == -1.0 and float(normalize_flow_frames(q).max()) == 1.0


def test_evaluate_applies_device_transform_before_folding_and_predict(cache: Path) -> None:
    seen = []

    def predict(model, batch):  # what robustness transforms rely on: normalised float clips
        seen.append(batch["rgb"].dtype)
        return model(batch["rgb"])

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(2), nn.Linear(3 * 16 * 16, 2))

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x).mean(1)

    model = Head()
    results = []
    for ds in _pair(cache, clips_per_video=2, modalities=("rgb",)):
        data = StackedClips(ds, 2)
        results.append(evaluate(model, predict, data, batch_size=4, clips_per_video=2, keep_logits=True))
    assert set(seen) == {torch.float32}
    assert results[0].n == results[1].n == len(NAMES)
    np.testing.assert_array_equal(results[0].logits, results[1].logits)


class ConvClips(nn.Module):
    """A conv net over clips (B, T, 3, H, W) that computes channels_last, like modistill's VideoStream."""

    channels_last = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.proj = nn.Conv2d(4, 4, 1)  # 1x1: the weight whose gradient strides DDP used to complain about
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        h = x.reshape(b * t, *x.shape[2:]).contiguous(memory_format=torch.channels_last)
        h = self.proj(F.relu(self.conv(h))).mean((2, 3))
        return self.fc(h).view(b, t, -1).mean(1)


def _loss(model, batch):
    loss = F.cross_entropy(model(batch["rgb"]), batch["label"])
    return loss, {"ce": loss.detach()}


def test_channels_last_model_trains_and_resumes_in_its_layout(
    cache: Path, tmp_path: Path, monkeypatch
) -> None:
    import modistill.engine.trainer as T

    cfg = dict(batch_size=2, progress=False, tensorboard=False, lr=1e-2)
    _, train = _pair(cache, train=True, modalities=("rgb",))
    torch.manual_seed(0)
    model = ConvClips()
    assert model.proj.weight.stride() == (4, 1, 1, 1)  # the default layout; channels_last is (4, 1, 4, 4)
    run = dict(
        loss_fn=_loss,
        predict_fn=lambda m, b: m(b["rgb"]),
        train_set=train,
        val_set=None,
        run_dir=tmp_path / "run",
    )
    train_stage(model, cfg=TrainConfig(epochs=1, **cfg), **run)
    for w in (model.conv.weight, model.proj.weight):  # converted before the optimizer (and DDP) saw them
        assert w.stride() == torch.empty(w.shape, memory_format=torch.channels_last).stride()

    # Resume to 2 epochs: the moments read from the (contiguous) checkpoint follow the parameters' layout.
    layouts: list[bool] = []

    def setup(*a, **k):
        st = real_setup(*a, **k)
        for p, s in st.optimizer.state.items():
            layouts.extend(v.stride() == p.stride() for v in s.values() if v.shape == p.shape)
        return st

    real_setup = T.setup_stage
    monkeypatch.setattr(T, "setup_stage", setup)
    train_stage(model, cfg=TrainConfig(epochs=2, **cfg), resume=True, **run)
    assert len(layouts) == 2 * len(list(model.parameters())) and all(layouts)  # exp_avg, exp_avg_sq


def test_match_memory_format_leaves_other_models_alone() -> None:
    plain = nn.Conv2d(3, 4, 3)
    assert match_memory_format(plain) is False and plain.weight.is_contiguous()
    net = ConvClips()
    p = net.conv.weight
    assert match_memory_format(net) is True and net.conv.weight is p  # same Parameter object
