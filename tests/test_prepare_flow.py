"""Flow in the prepared cache: `modistill.data.prepare_flow` (+ `modistill prepare --flow`) and the Dataset.

One tiny synthetic NTU-format set (3 subjects, 18 videos of 16-20 frames at 320x180) is prepared once at 32 px
with 8 cached frames; flow uses DIS (cheap) with L = 2 stacked fields, so x-channel handling is checked on
more than channel 0.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from modistill.data import cache as C
from modistill.data.dataset import CachedClipDataset
from modistill.data.flow import (
    compute_flow,
    flip_flow,
    flow_for_sample,
    flow_to_tensor,
    quantize_flow,
    read_flow,
)
from modistill.data.prepare import PrepareError, PrepareOptions, prepare_cache
from modistill.data.prepare_flow import (
    FlowOptions,
    crop_spec,
    flow_failures_path,
    flow_settings,
    prepare_flow,
    read_flow_failures,
)
from modistill.data.synth import generate_dataset
from modistill.data.video import read_video_frames

S, F, L = 32, 8, 2
OPTS = FlowOptions(method="dis", stack=L)


@pytest.fixture(scope="module")
def flow_cache(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("flowcache")
    names = generate_dataset(tmp / "src", preset="tiny", seed=0, workers=1, subjects=[1, 2, 3])
    res = prepare_cache(tmp / "cache", tmp / "src", options=PrepareOptions(size=S, frames=F))
    assert res.exit_status == 0
    fres = prepare_flow(tmp / "cache", options=OPTS)
    return {"src": tmp / "src", "cache": tmp / "cache", "names": names, "result": fres}


def _video(src: Path, name: str) -> Path:
    return src / "nturgb+d_rgb" / f"{name}_rgb.avi"


def test_flow_written_for_every_sample_and_recorded(flow_cache):
    cache, fres = flow_cache["cache"], flow_cache["result"]
    assert fres.exit_status == 0 and not fres.failures
    assert fres.done == sorted(flow_cache["names"]) and not fres.skipped
    cfg = C.load_config(cache)
    assert cfg.modalities == ("rgb", "depth", "flow")
    assert flow_settings(cache) == {
        "method": "dis",
        "stack": 2,
        "bound": 20.0,
        "compute_size": S,
        "params": {},
    }
    for rec in C.read_index(cache):
        arr = read_flow(cache, rec["name"])
        assert arr.dtype == np.uint8 and arr.shape == (F, S, S, 2 * L)
        assert arr.std() > 0  # the synthetic bodies move: the flow is not constant


def test_cached_rgb_is_the_crop_flow_uses(flow_cache):
    """The crop recomputed from the index record reproduces the cached RGB bit for bit: flow and RGB align."""
    cache, src = flow_cache["cache"], flow_cache["src"]
    cfg = C.load_config(cache)
    for rec in C.read_index(cache):
        frames = read_video_frames(_video(src, rec["name"]), rec["source_frames"])
        crop = crop_spec(rec, cfg).crop_fn()
        assert crop is not None
        mine = np.stack([cv2.resize(f, (S, S), interpolation=cv2.INTER_AREA) for f in crop(frames)])
        np.testing.assert_array_equal(mine, C.load_array(cache, "rgb", rec["name"]))


def test_flow_of_frame_k_is_pairs_starting_at_its_source_frame(flow_cache):
    """Independent recomputation: cached frame k holds quantised flow of source pairs (i, i+1), (i+1, i+2)."""
    cache, src = flow_cache["cache"], flow_cache["src"]
    cfg = C.load_config(cache)
    rec = C.read_index(cache)[0]
    n = rec["source_frame_counts"]["rgb"]
    frames = read_video_frames(_video(src, rec["name"]), np.arange(n))
    crop = crop_spec(rec, cfg).crop_fn()
    small = np.stack([cv2.resize(f, (S, S), interpolation=cv2.INTER_AREA) for f in crop(frames)])
    pairs = quantize_flow(compute_flow(small, "dis"))  # (n-1, S, S, 2): pair j = frame j -> j+1
    stored = read_flow(cache, rec["name"])
    for k, i in enumerate(rec["source_frames"]):
        for l in range(L):
            j = min(i + l, n - 2)  # pair starts past the last pair repeat it
            np.testing.assert_array_equal(stored[k, ..., 2 * l : 2 * l + 2], pairs[j])
    # And it is exactly what the per-sample worker function returns.
    direct = flow_for_sample(_video(src, rec["name"]), rec["source_frames"], crop, S, "dis", L)
    np.testing.assert_array_equal(direct, stored)


def test_resume_skips_done_and_redoes_missing(flow_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(flow_cache["cache"], cache)
    again = prepare_flow(cache, flow_cache["src"], options=OPTS)
    assert again.done == [] and sorted(again.skipped) == sorted(flow_cache["names"])
    victim = flow_cache["names"][3]
    before = read_flow(cache, victim).copy()
    (cache / "flow" / f"{victim}.npy").unlink()
    third = prepare_flow(cache, flow_cache["src"], options=OPTS)
    assert third.done == [victim] and len(third.skipped) == len(flow_cache["names"]) - 1
    np.testing.assert_array_equal(read_flow(cache, victim), before)
    # Re-running the RGB/depth preparation on a cache that now holds flow is not a settings conflict.
    res = prepare_cache(cache, flow_cache["src"], options=PrepareOptions(size=S, frames=F))
    assert res.exit_status == 0 and len(res.skipped) == len(flow_cache["names"])


def test_other_flow_settings_are_refused(flow_cache, tmp_path):
    with pytest.raises(PrepareError, match=r"cache_config\.json.*stack: 2 \(cache\) vs 1 \(requested\)"):
        prepare_flow(flow_cache["cache"], options=FlowOptions(method="dis", stack=1))
    # Doing what the message says (delete the flow folder) lets the new settings replace the recorded ones.
    cache = tmp_path / "cache"
    shutil.copytree(flow_cache["cache"], cache)
    with pytest.raises(PrepareError, match=r"delete the folder .*flow and run again"):
        prepare_flow(cache, options=FlowOptions(method="dis", stack=1, bound=8.0), limit=1)
    shutil.rmtree(cache / "flow")
    assert prepare_flow(cache, options=FlowOptions(method="dis", stack=1, bound=8.0), limit=1).exit_status == 0
    assert flow_settings(cache)["stack"] == 1 and C.load_config(cache).flow_bound == 8.0
    with pytest.raises(ValueError, match="flow method"):
        FlowOptions(method="lucas-kanade")


def test_shards_and_failures(flow_cache, tmp_path):
    """Shards are disjoint and cover the cache; a missing video is a listed failure naming it (exit 3)."""
    cache = tmp_path / "cache"
    shutil.copytree(flow_cache["cache"], cache)
    shutil.rmtree(cache / "flow")
    src = tmp_path / "src"
    (src / "nturgb+d_rgb").mkdir(parents=True)
    names = sorted(flow_cache["names"])
    lost = names[5]
    for n in names:
        if n != lost:
            (src / "nturgb+d_rgb" / f"{n}_rgb.avi").symlink_to(_video(flow_cache["src"], n))
    parts = [prepare_flow(cache, src, options=OPTS, shard=(i, 2)) for i in range(2)]
    done = [n for p in parts for n in p.done]
    assert sorted(done) == [n for n in names if n != lost] and len(set(done)) == len(done)
    assert [p.exit_status for p in parts].count(3) == 1
    fails = read_flow_failures(cache)
    assert len(fails) == 1 and fails[0]["sample"] == lost and f"{lost}_rgb.avi" in fails[0]["error"]
    i = [p.exit_status for p in parts].index(3)
    assert json.loads(flow_failures_path(cache, (i, 2)).read_text())["sample"] == lost
    # The RGB/depth failures file is left alone.
    assert C.read_failures(cache) == []


def test_dataset_returns_stacked_flow_and_flips_negate_x(flow_cache):
    cache = flow_cache["cache"]
    ds = CachedClipDataset(cache, "train", frames=3, train=True, modalities=("rgb", "flow"), seed=3)
    seen = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            idx, flipped = ds.item_indices(i)
            raw = read_flow(cache, item["sample"])[idx]  # (T, S, S, 2L) uint8
            assert item["flow"].shape == (3, 2 * L, S, S) and item["flow"].dtype == torch.float32
            expect = flow_to_tensor(flip_flow(raw) if flipped else raw)
            torch.testing.assert_close(item["flow"], expect, atol=1e-6, rtol=0)
            if flipped:  # x channels (0, 2) are negated mirror images, y channels (1, 3) plain mirrors
                plain = flow_to_tensor(raw)
                torch.testing.assert_close(item["flow"][:, 0::2], -plain[:, 0::2].flip(-1), atol=1e-6, rtol=0)
                torch.testing.assert_close(item["flow"][:, 1::2], plain[:, 1::2].flip(-1), atol=1e-6, rtol=0)
            seen.add(flipped)
    assert seen == {True, False}


def test_dataset_without_flow_names_the_config(flow_cache, tmp_path):
    cache = tmp_path / "c"
    prepare_cache(cache, flow_cache["src"], options=PrepareOptions(size=16, frames=4), limit=2)
    with pytest.raises(C.CacheError, match=r"cache_config\.json.*\['flow'\]"):
        CachedClipDataset(cache, None, modalities=("rgb", "flow"))


def test_cli_prepare_with_flow(flow_cache, tmp_path, capsys):
    from modistill.cli import main

    out = tmp_path / "cli"
    argv = ["prepare", str(flow_cache["src"]), str(out), "--size", "16", "--frames", "4", "--workers", "1"]
    assert main([*argv, "--limit", "3", "--quiet", "--flow", "farneback", "--flow-stack", "1"]) == 0
    assert "flow (farneback, L=1, bound 20 px) for 3 samples" in capsys.readouterr().out
    assert sorted(p.stem for p in (out / "flow").glob("*.npy")) == sorted(flow_cache["names"])[:3]
    assert read_flow(out, sorted(flow_cache["names"])[0]).shape == (4, 16, 16, 2)
    # Other flow settings on the same cache: exit status 2 and a message naming the config file.
    assert main([*argv, "--limit", "3", "--quiet", "--flow", "dis"]) == 2
    assert "cache_config.json" in capsys.readouterr().err


@pytest.mark.slow
def test_worker_processes_match_in_process(flow_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(flow_cache["cache"], cache)
    shutil.rmtree(cache / "flow")
    res = prepare_flow(cache, options=OPTS, workers=2, limit=4)
    assert res.exit_status == 0 and len(res.done) == 4
    for n in res.done:
        np.testing.assert_array_equal(read_flow(cache, n), read_flow(flow_cache["cache"], n))


def test_manifest_source_rgb_only_cache_and_unlisted_sample(flow_cache, tmp_path):
    """A cache made from a manifest, without depth (whole frames resized): flow finds the videos through the
    manifest the cache records; a sample missing from a manifest given explicitly is a listed failure."""
    from modistill.data.manifest import ntu_manifest, write_manifest

    entries = ntu_manifest(flow_cache["src"], sorted(flow_cache["names"])[:3])
    write_manifest(tmp_path / "all.csv", entries)
    write_manifest(tmp_path / "two.csv", entries[:2])
    cache = tmp_path / "cache"
    opts = PrepareOptions(size=16, frames=4, modalities=("rgb",))
    assert prepare_cache(cache, manifest=tmp_path / "all.csv", options=opts).exit_status == 0
    cfg = C.load_config(cache)
    rec = C.read_index(cache)[0]
    assert crop_spec(rec, cfg).crop_fn() is None  # no depth: the whole frame is resized, as the RGB was
    res = prepare_flow(cache, options=FlowOptions(method="dis"))
    assert res.exit_status == 0 and len(res.done) == 3
    frames = read_video_frames(entries[0].rgb, rec["source_frames"])
    small = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in frames])
    np.testing.assert_array_equal(small, C.load_array(cache, "rgb", rec["name"]))
    (cache / "flow" / f"{entries[2].sample}.npy").unlink()
    res = prepare_flow(cache, manifest=tmp_path / "two.csv", options=FlowOptions(method="dis"))
    assert res.exit_status == 3 and res.failures[0]["sample"] == entries[2].sample
    assert "two.csv" in res.failures[0]["error"] and "not listed" in res.failures[0]["error"]
