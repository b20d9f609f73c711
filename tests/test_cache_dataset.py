"""CachedClipDataset: shapes, exact normalisation, shared indices and flip, determinism, splits, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_prepare_layout import frame_of_raw_depth, frame_of_rgb, make_ntu_root

from modistill.core.atomic import save_array_atomic
from modistill.data import cache as C
from modistill.data.dataset import IMAGENET_MEAN, IMAGENET_STD, CachedClipDataset, clip_indices, denormalize
from modistill.data.ntu import split_with_validation
from modistill.data.prepare import PrepareOptions, prepare_cache
from modistill.data.sampling import sample_indices

NAMES = ["S001C001P001R001A001", "S001C001P002R001A002", "S001C002P003R001A003", "S001C001P004R001A002"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ds")
    src = make_ntu_root(tmp / "src", NAMES, frames=12)
    res = prepare_cache(tmp / "cache", src, options=PrepareOptions(size=32, frames=8, depth_encoding="raw"))
    assert res.exit_status == 0
    return tmp / "cache"


def write_cache(root: Path, names: list[str], frames: int = 6, size: int = 8, labels=None) -> Path:
    """A cache written through the storage API only: frame k of every array holds the value 10 k."""
    cfg = C.CacheConfig(size=size, frames=frames, depth_encoding="raw", source="ntu", num_classes=None)
    cfg.write(root / C.CONFIG_NAME)
    with C.JsonlAppender(C.index_path(root)) as idx:
        for j, n in enumerate(names):
            a = np.broadcast_to(
                (10 * np.arange(frames, dtype=np.uint8))[:, None, None, None], (frames, size, size, 3)
            )
            for m in ("rgb", "depth"):
                save_array_atomic(C.array_path(root, m, n), a)
            lab = labels[j] if labels is not None else int(n[-3:]) - 1
            idx.append({"name": n, "label": lab, "frames": frames, "source_frames": list(range(frames))})
    return root


def _decode(item: dict) -> tuple[list[int], list[int], bool, bool]:
    """(rgb frame ids, depth frame ids, rgb flipped?, depth flipped?) of an item of the layout data."""
    rgb = (denormalize(item["rgb"], "rgb") * 255).round()
    dep = (denormalize(item["depth"], "depth") * 255).round()
    rf = [frame_of_rgb(float(f.median())) for f in rgb]
    df = [frame_of_raw_depth(float(f.median())) for f in dep]
    # The scene's bar sits left of the crop centre; a flip moves it right (in both modalities or neither).
    side = lambda x: float(x[0, 0].mean(0).argmax()) > x.shape[-1] / 2  # noqa: E731
    return rf, df, side(rgb), side(dep)


def test_train_items_share_indices_and_flip(cache: Path) -> None:
    ds = CachedClipDataset(cache, None, frames=5, train=True, seed=3)
    assert len(ds) == 4 and ds.num_classes == 60 and ds.labels == [0, 1, 1, 2]
    flips = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            assert set(item) == {"rgb", "depth", "label", "sample", "index"}
            assert item["rgb"].shape == item["depth"].shape == (5, 3, 32, 32)
            assert item["rgb"].dtype == item["depth"].dtype == torch.float32
            assert item["label"].dtype == torch.int64 and item["label"].dim() == 0
            assert (
                item["label"].item() == ds.labels[i]
                and item["sample"] == ds.samples[i]
                and item["index"] == i
            )
            idx, flip = ds.item_indices(i)
            expect = [ds.records[i]["source_frames"][k] for k in idx]
            rf, df, rflip, dflip = _decode(item)
            assert rf == df == expect
            assert rflip == dflip == flip
            flips.add(flip)
    assert flips == {True, False}


def test_eval_items_are_even_and_unflipped(cache: Path) -> None:
    ds = CachedClipDataset(cache, None, frames=5, train=False)
    for i in range(len(ds)):
        idx, flip = ds.item_indices(i)
        assert idx.tolist() == sample_indices(8, 5, "even").tolist() and not flip
        rf, df, rflip, dflip = _decode(ds[i])
        assert rf == df == [ds.records[i]["source_frames"][k] for k in idx] and not rflip and not dflip


def test_determinism_per_seed_epoch_index(cache: Path) -> None:
    a = CachedClipDataset(cache, None, train=True, seed=7)
    b = CachedClipDataset(cache, None, train=True, seed=7)
    b.set_epoch(1)
    b.set_epoch(0)
    for i in reversed(range(len(a))):  # order of access does not matter
        assert torch.equal(a[i]["rgb"], b[i]["rgb"])
    draws = {}
    for e in range(4):
        a.set_epoch(e)
        draws[e] = [(tuple(a.item_indices(i)[0]), a.item_indices(i)[1]) for i in range(len(a))]
    assert len({tuple(v) for v in draws.values()}) > 1  # epochs differ
    a.set_epoch(2)
    assert [(tuple(a.item_indices(i)[0]), a.item_indices(i)[1]) for i in range(len(a))] == draws[2]
    c = CachedClipDataset(cache, None, train=True, seed=8)  # another seed, another stream
    assert [(tuple(c.item_indices(i)[0]), c.item_indices(i)[1]) for i in range(len(c))] != draws[0]


def test_dataloader_workers_see_the_same_items(cache: Path) -> None:
    ds = CachedClipDataset(cache, None, train=True, seed=1)
    ds.set_epoch(5)
    ref = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0)))
    got = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)))
    assert ref["rgb"].shape == (4, 5, 3, 32, 32) and ref["label"].shape == (4,)
    assert torch.equal(ref["rgb"], got["rgb"]) and torch.equal(ref["depth"], got["depth"])
    assert ref["sample"] == got["sample"] and torch.equal(ref["index"], got["index"])


def test_normalisation_is_plain_imagenet(tmp_path: Path) -> None:
    root = write_cache(tmp_path, ["S001C001P001R001A001"], frames=6)
    item = CachedClipDataset(root, None, frames=6)[0]
    for k in range(6):
        for c in range(3):
            want = (10 * k / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
            assert item["rgb"][k, c].unique().tolist() == [pytest.approx(want, abs=1e-6)]
            assert item["depth"][k, c].unique().tolist() == [pytest.approx(want, abs=1e-6)]
    # Dark pixels stay below the mean: no clipping (REF §4).
    assert item["rgb"].min().item() == pytest.approx(-IMAGENET_MEAN[0] / IMAGENET_STD[0], abs=1e-6)


def test_clips_per_video(tmp_path: Path) -> None:
    root = write_cache(tmp_path, ["S001C001P001R001A001", "S001C001P002R001A002"], frames=12)
    ds = CachedClipDataset(root, None, frames=3, clips_per_video=4)
    assert len(ds) == 8 and ds.labels == [0, 0, 0, 0, 1, 1, 1, 1]
    seen = []
    for i in range(4):
        item = ds[i]
        assert item["sample"] == "S001C001P001R001A001"
        frames = (denormalize(item["rgb"])[:, 0, 0, 0] * 255).round().div(10).int().tolist()
        assert frames == clip_indices(12, 3, i, 4).tolist() == ds.item_indices(i)[0].tolist()
        seen.append(tuple(frames))
    assert seen == [(0, 4, 8), (1, 5, 9), (2, 6, 10), (3, 7, 11)]


@given(st.integers(1, 80), st.integers(1, 12))
def test_one_clip_equals_even_sampling(n: int, k: int) -> None:
    assert clip_indices(n, k, 0, 1).tolist() == sample_indices(n, k, "even").tolist()
    for c in range(3):
        idx = clip_indices(n, k, c, 3)
        assert idx.min() >= 0 and idx.max() < n and (np.diff(idx) >= 0).all()


def test_splits_follow_the_protocol(tmp_path: Path) -> None:
    names = [f"S001C00{c}P00{p}R001A00{a}" for c in (1, 2) for p in (1, 2, 3) for a in (1, 2)]
    root = write_cache(tmp_path, names)
    C.write_sample_list(root, names)
    want = split_with_validation(names, "xsub")
    for split in ("train", "val", "test"):
        ds = CachedClipDataset(root, split, protocol="xsub")
        assert ds.samples == want[split]
    assert {int(s[9:12]) for s in CachedClipDataset(root, "val").samples} == {1}  # subject 1 = validation
    assert {int(s[9:12]) for s in CachedClipDataset(root, "test").samples} == {3}
    cams = {int(s[5:8]) for s in CachedClipDataset(root, "test", protocol="xview").samples}
    assert cams == {1}
    with pytest.raises(ValueError, match="split must be"):
        CachedClipDataset(root, "dev")


def test_split_samples_missing_from_the_cache(tmp_path: Path) -> None:
    root = write_cache(tmp_path, ["S001C001P002R001A001"])
    C.write_sample_list(root, ["S001C001P002R001A001", "S001C001P004R001A001"])  # P004 failed to prepare
    with pytest.raises(C.CacheError, match=r"1 of 2 samples of split 'train'.*S001C001P004R001A001"):
        CachedClipDataset(root, "train")
    with pytest.warns(UserWarning, match="skipping"):
        ds = CachedClipDataset(root, "train", on_missing="skip")
    assert ds.samples == ["S001C001P002R001A001"]


def test_missing_array_file_is_named(tmp_path: Path) -> None:
    root = write_cache(tmp_path, ["S001C001P001R001A001", "S001C001P002R001A002"])
    C.array_path(root, "depth", "S001C001P002R001A002").unlink()
    with pytest.raises(C.CacheError, match=r"depth/S001C001P002R001A002\.npy: cached depth array"):
        CachedClipDataset(root, None)
    ds = CachedClipDataset(root, None, check_files=False)
    ds[0]
    with pytest.raises(C.CacheError, match=r"depth/S001C001P002R001A002\.npy"):
        ds[1]
    only_rgb = CachedClipDataset(root, None, modalities=("rgb",))
    assert set(only_rgb[1]) == {"rgb", "label", "sample", "index"}
    with pytest.raises(C.CacheError, match="not in this cache"):
        CachedClipDataset(root, None, modalities=("rgb", "flow"))
    with pytest.raises(C.CacheError, match="cache_config.json: not found"):
        CachedClipDataset(tmp_path / "nope", None)


def test_synthetic_generator_round_trip(tmp_path: Path) -> None:
    synth = pytest.importorskip("modistill.data.synth")
    names = synth.generate_dataset(tmp_path / "src", "tiny", seed=0, rgb_size=(160, 90), depth_size=(64, 53))
    res = prepare_cache(tmp_path / "cache", tmp_path / "src", options=PrepareOptions(size=32, frames=6))
    assert res.exit_status == 0 and sorted(res.done) == sorted(names)
    cfg = C.load_config(tmp_path / "cache")
    assert cfg.num_classes == 3 and cfg.class_names == ["push_forward", "hands_to_chest", "wave"]
    # "tiny" has subjects 1 (held out for validation under xsub) and 3 (test): split it cross-view.
    train = CachedClipDataset(tmp_path / "cache", "train", protocol="xview", train=True)
    test = CachedClipDataset(tmp_path / "cache", "test", protocol="xview")
    assert train.num_classes == 3 and set(train.labels) <= {0, 1, 2}
    assert not set(train.samples) & set(test.samples)
    assert len(train) == 3 and len(test) == 6
    batch = next(iter(torch.utils.data.DataLoader(test, batch_size=3)))
    assert batch["rgb"].shape == (3, 5, 3, 32, 32) and batch["depth"].shape == (3, 5, 3, 32, 32)
    # The synthetic skeletons fit well: every sample is aligned from its own skeleton.
    assert {r["alignment"]["method"] for r in C.read_index(tmp_path / "cache")} == {"skeleton"}


def test_flow_modality_flips_every_x_channel_with_the_images(tmp_path: Path) -> None:
    from modistill.data.flow import flip_flow, flow_to_tensor

    name = "S001C001P001R001A001"
    root = write_cache(tmp_path, [name], frames=6)
    cfg = C.load_config(root)
    cfg.modalities = ("rgb", "depth", "flow")
    cfg.write(root / C.CONFIG_NAME)
    rng = np.random.default_rng(0)
    flow = rng.integers(0, 256, (6, 8, 8, 4), dtype=np.uint8)  # L = 2 stacked fields: x1 y1 x2 y2
    save_array_atomic(C.array_path(root, "flow", name), flow)
    rgb = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    save_array_atomic(C.array_path(root, "rgb", name), rgb)
    for p, flipped in ((1.0, True), (0.0, False)):
        ds = CachedClipDataset(root, None, frames=3, train=True, modalities=("rgb", "flow"), flip_p=p)
        item = ds[0]
        idx, flip = ds.item_indices(0)
        assert flip is flipped
        want_flow = flip_flow(flow[idx]) if flipped else flow[idx]
        assert torch.equal(item["flow"], flow_to_tensor(want_flow))
        assert item["flow"].shape == (3, 4, 8, 8)
        want_rgb = rgb[idx][:, :, ::-1] if flipped else rgb[idx]
        got_rgb = (denormalize(item["rgb"]) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(got_rgb, want_rgb)


def test_open_maps_are_reused_bounded_and_not_pickled(tmp_path: Path, monkeypatch) -> None:
    """The dataset keeps its arrays' memory maps open (speed) but at most OPEN_MAPS of them, least recently
    used closed first, and a pickled copy (a DataLoader worker's) starts without them."""
    import pickle

    from modistill.data import dataset as D

    names = [f"S001C001P00{i}R001A00{i}" for i in range(1, 5)]
    ds = CachedClipDataset(write_cache(tmp_path, names), None, frames=3, modalities=("rgb",))
    opened = []
    real = C.load_array
    monkeypatch.setattr(C, "load_array", lambda *a, **k: opened.append(a[2]) or real(*a, **k))
    monkeypatch.setattr(D, "OPEN_MAPS", 2)
    first = [ds[i]["rgb"] for i in (0, 1, 0)]
    assert opened == [names[0], names[1]]  # item 0 again: its map was open
    ds[2]  # a third map closes the least recently used one (names[1])
    assert list(k[1] for k in ds._maps) == [names[0], names[2]]
    ds[1]
    assert opened == [names[0], names[1], names[2], names[1]]
    assert torch.equal(ds[0]["rgb"], first[0])  # the same frames, from an open map
    copy = pickle.loads(pickle.dumps(ds))
    assert len(copy._maps) == 0 and len(ds._maps) == 2
    assert torch.equal(copy[0]["rgb"], first[0])
