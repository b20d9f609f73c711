"""`modistill prepare` end to end on hand-made NTU-layout data (see test_prepare_layout.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_prepare_layout import (
    TRUE_SCALE,
    TRUE_TX,
    TRUE_TY,
    depth_mm,
    frame_of_raw_depth,
    frame_of_rgb,
    make_ntu_root,
)

from modistill.cli import main
from modistill.data import cache as C
from modistill.data.prepare import PrepareError, PrepareOptions, prepare_cache
from modistill.data.records import AlignmentRecord, FailureRecord, IndexRecord
from modistill.data.sampling import sample_indices

OPTS = PrepareOptions(size=32, frames=8, depth_encoding="raw")
GOOD = ["S001C001P001R001A001", "S001C001P002R001A002", "S001C002P003R001A003"]


def _bar_columns(frame: np.ndarray) -> np.ndarray:
    """Columns of an (S, S, 3) uint8 crop covered by the bright bar."""
    return np.flatnonzero(frame[..., 0].astype(float).mean(0) > 200)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    tmp = tmp_path_factory.mktemp("prep")
    src = make_ntu_root(tmp / "src", GOOD, frames=12)
    res = prepare_cache(tmp / "cache", src, options=OPTS)
    return src, tmp / "cache", res


def test_prepare_writes_arrays_index_and_config(prepared) -> None:
    src, out, res = prepared
    assert res.exit_status == 0 and sorted(res.done) == GOOD and not res.failures and not res.skipped
    cfg = C.load_config(out)
    assert (cfg.size, cfg.frames, cfg.depth_encoding, cfg.num_classes) == (32, 8, "raw", 60)
    assert (cfg.source, cfg.source_path) == ("ntu", str(src.resolve()))
    assert (cfg.depth_scale, cfg.depth_decode, cfg.modalities) == (1000.0, "plain", ("rgb", "depth"))
    assert C.read_sample_list(out) == GOOD
    recs = C.read_index(out)
    assert [r["name"] for r in recs] == GOOD
    for r in recs:
        # The records carry exactly the fields `modistill.data.records` documents.
        assert set(r) == IndexRecord.__required_keys__
        assert set(r["alignment"]) == AlignmentRecord.__required_keys__
        name = r["name"]
        n = int(name[-3:])
        assert r["label"] == n - 1 and r["action"] == n
        assert (r["setup"], r["camera"], r["subject"]) == (1, int(name[5:8]), int(name[9:12]))
        assert r["frames"] == 8 and r["source_frames"] == sample_indices(12, 8, "even").tolist()
        assert r["source_frame_counts"] == {"rgb": 12, "depth": 12, "skeleton": 12}
        a = r["alignment"]
        assert a["method"] == "skeleton"
        assert a["scale"] == pytest.approx(TRUE_SCALE, abs=1e-3)
        assert (a["tx"], a["ty"]) == (pytest.approx(TRUE_TX, abs=0.05), pytest.approx(TRUE_TY, abs=0.05))
        assert r["warnings"] == []
        rgb, depth = C.load_array(out, "rgb", name), C.load_array(out, "depth", name)
        assert rgb.shape == depth.shape == (8, 32, 32, 3) and rgb.dtype == depth.dtype == np.uint8
        # Each stored frame is the source frame the index claims, in both modalities.
        for k, src_i in enumerate(r["source_frames"]):
            assert frame_of_rgb(np.median(rgb[k])) == src_i
            assert frame_of_raw_depth(np.median(depth[k])) == src_i
            assert np.median(depth[k]) == round(255 * (depth_mm(src_i) - 500) / 4000)
        # Aligned crop: the scene's bar lands on the same output columns in RGB and depth.
        rc, dc = _bar_columns(rgb[0]), _bar_columns(depth[0])
        assert rc.size >= 3 and abs(rc.mean() - dc.mean()) <= 1.0
    assert C.read_failures(out) == []


def test_jet_encoding_default(tmp_path: Path, prepared) -> None:
    src, _, _ = prepared
    res = prepare_cache(tmp_path / "jet", src, options=PrepareOptions(size=16, frames=4), limit=1)
    assert res.done == GOOD[:1]
    d = C.load_array(tmp_path / "jet", "depth", GOOD[0])
    assert C.load_config(tmp_path / "jet").depth_encoding == "jet"
    assert not np.all(d[..., 0] == d[..., 2])  # coloured, unlike "raw"


def test_failures_are_listed_while_the_rest_completes(tmp_path: Path) -> None:
    bad_sk, bad_avi, no_depth = "S001C001P004R001A004", "S001C001P005R001A005", "S001C001P006R001A006"
    src = make_ntu_root(
        tmp_path / "src",
        GOOD[:2] + [bad_sk, bad_avi, no_depth],
        frames=8,
        truncated_skeleton=(bad_sk,),
        bad_video=(bad_avi,),
        no_depth=(no_depth,),
    )
    out = tmp_path / "cache"
    # Two worker processes: failures travel back from the workers as records.
    code = main(["prepare", str(src), str(out), "--size", "16", "--frames", "4", "--workers", "2", "--quiet"])
    assert code == 3
    assert [r["name"] for r in C.read_index(out)] == GOOD[:2]
    fails = {f["sample"]: f for f in C.read_failures(out)}
    assert set(fails) == {bad_sk, bad_avi, no_depth}
    assert all(set(f) == FailureRecord.__required_keys__ for f in fails.values())
    assert fails[bad_sk]["stage"] == "skeleton"
    assert f"{bad_sk}.skeleton" in fails[bad_sk]["error"] and "truncated" in fails[bad_sk]["error"]
    assert fails[bad_avi]["stage"] == "rgb"
    assert f"{bad_avi}_rgb.avi" in fails[bad_avi]["error"] and "cannot open video" in fails[bad_avi]["error"]
    assert fails[no_depth]["stage"] == "depth"
    assert f"nturgb+d_depth_masked/{no_depth}" in fails[no_depth]["error"]
    assert "depth folder or video not found" in fails[no_depth]["error"]
    # A resumed run retries only the failed ones (and fails them again, with the same status).
    res = prepare_cache(out, src, options=PrepareOptions(size=16, frames=4))
    assert sorted(res.skipped) == GOOD[:2] and res.done == [] and len(res.failures) == 3
    assert res.exit_status == 3


def test_resume_redoes_only_what_is_missing(tmp_path: Path, prepared) -> None:
    src, _, _ = prepared
    out = tmp_path / "cache"
    first = prepare_cache(out, src, options=OPTS, limit=2)  # an "interrupted" run: 2 of 3 samples
    assert first.done == GOOD[:2]
    stamp = {n: C.array_path(out, "rgb", n).stat().st_mtime_ns for n in GOOD[:2]}
    os.remove(C.array_path(out, "depth", GOOD[0]))  # one array lost after the fact
    with open(C.index_path(out), "a", encoding="utf-8") as f:  # and a torn record from a kill
        f.write('{"name": "S001C002P003R0')
    res = prepare_cache(out, src, options=OPTS)
    assert sorted(res.done) == [GOOD[0], GOOD[2]] and res.skipped == [GOOD[1]]
    assert C.array_path(out, "rgb", GOOD[1]).stat().st_mtime_ns == stamp[GOOD[1]]  # untouched
    assert [r["name"] for r in C.read_index(out)] == GOOD
    assert C.index_path(out).read_text().endswith("\n")
    # Nothing left to do: a third run skips everything.
    assert prepare_cache(out, src, options=OPTS).done == []


def test_shards_are_disjoint_and_cover_all(tmp_path: Path) -> None:
    names = GOOD + ["S001C001P004R001A004", "S001C002P005R001A005"]
    src = make_ntu_root(tmp_path / "src", names, frames=6)
    out = tmp_path / "cache"
    opts = PrepareOptions(size=16, frames=4)
    done = []
    for i in range(3):
        args = ["--size", "16", "--frames", "4", "--shard", f"{i}/3", "--workers", "0", "--quiet"]
        code = main(["prepare", str(src), str(out), *args])
        assert code == 0
        part = [r["name"] for r in C.read_jsonl(C.index_path(out, (i, 3)))]
        assert part == sorted(names)[i::3]
        assert (out / f"failures.shard-{i}-of-3.jsonl").is_file()
        done.append(part)
    flat = [n for p in done for n in p]
    assert sorted(flat) == sorted(names) and len(set(flat)) == len(flat)
    assert [r["name"] for r in C.read_index(out)] == sorted(names)  # readers merge the parts
    assert prepare_cache(out, src, options=opts).done == []  # an unsharded resume sees them all


def test_missing_skeletons_use_the_fallback(tmp_path: Path) -> None:
    listed, zero, absent = "S001C001P004R001A004", "S001C001P005R001A005", "S001C001P006R001A006"
    src = make_ntu_root(
        tmp_path / "src", GOOD + [listed, zero, absent], frames=8, zero_body=(zero,), no_skeleton=(absent,)
    )
    (src / "NTU_RGBD_samples_with_missing_skeletons.txt").write_text(f"header line\n\n{listed}\n")
    res = prepare_cache(tmp_path / "cache", src, options=OPTS)
    assert res.exit_status == 0 and sorted(res.fallback) == [listed, zero, absent]
    recs = {r["name"]: r for r in C.read_index(tmp_path / "cache")}
    for name, why in ((listed, "missing-skeleton list"), (zero, "0 bodies"), (absent, "no skeleton file")):
        a = recs[name]["alignment"]
        assert a["method"] == "fallback" and "group setup|view=1|1" in a["note"]
        assert a["scale"] == pytest.approx(TRUE_SCALE, abs=1e-3) and a["tx"] == pytest.approx(
            TRUE_TX, abs=0.05
        )
        assert any(why in w for w in recs[name]["warnings"]), recs[name]["warnings"]
        rgb = C.load_array(tmp_path / "cache", "rgb", name)
        dep = C.load_array(tmp_path / "cache", "depth", name)
        assert abs(_bar_columns(rgb[0]).mean() - _bar_columns(dep[0]).mean()) <= 1.0
    table = json.loads((tmp_path / "cache" / C.FALLBACK_NAME).read_text())
    assert sorted(table["groups"]) == ["1|1", "1|2"] and len(table["groups"]["1|1"]) == 2  # P001, P002


def test_frame_count_mismatch_is_a_warning(tmp_path: Path) -> None:
    name = GOOD[0]
    src = make_ntu_root(tmp_path / "src", [name], frames=10, rgb_frames={name: 12})
    res = prepare_cache(tmp_path / "cache", src, options=OPTS)
    assert res.exit_status == 0
    (rec,) = C.read_index(tmp_path / "cache")
    assert rec["source_frame_counts"] == {"rgb": 12, "depth": 10, "skeleton": 10}
    assert max(rec["source_frames"]) <= 9 and rec["source_frames"] == sample_indices(10, 8, "even").tolist()
    assert any("frame counts differ" in w for w in rec["warnings"])


def test_incompatible_existing_cache_and_bad_source(tmp_path: Path, prepared, capsys) -> None:
    src, out, _ = prepared
    with pytest.raises(PrepareError, match=r"cache_config\.json.*size: 32 \(cache\) vs 48"):
        prepare_cache(out, src, options=PrepareOptions(size=48, frames=8, depth_encoding="raw"))
    assert main(["prepare", str(src), str(out), "--size", "48", "--workers", "0"]) == 2
    assert main(["prepare", str(tmp_path / "nowhere"), str(tmp_path / "c2")]) == 2
    assert "source folder not found" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "c3")]) == 2  # neither SRC nor --manifest


def test_manifest_source_with_registered_alignment(tmp_path: Path, prepared) -> None:
    src, _, _ = prepared
    rows = ["sample,rgb,depth,label,subject,view"]
    for k, n in enumerate(GOOD[:2]):
        rows.append(
            f"clip{k},{src}/nturgb+d_rgb/{n}_rgb.avi,{src}/nturgb+d_depth_masked/{n},{k + 3},alice,left"
        )
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    base = [
        "--manifest",
        str(tmp_path / "m.csv"),
        "--size",
        "16",
        "--frames",
        "4",
        "--quiet",
        "--workers",
        "0",
    ]
    # No skeletons at all: nothing to borrow an alignment from -> clear failures, exit status 3.
    assert main(["prepare", str(tmp_path / "c1"), *base]) == 3
    fails = C.read_failures(tmp_path / "c1")
    assert [f["stage"] for f in fails] == ["align", "align"] and "--alignment registered" in fails[0]["error"]
    out = tmp_path / "c2"
    assert main(["prepare", str(out), *base, "--alignment", "registered"]) == 0
    recs = C.read_index(out)
    assert [r["name"] for r in recs] == ["clip0", "clip1"] and [r["label"] for r in recs] == [3, 4]
    assert recs[0]["subject"] == "alice" and recs[0]["camera"] == "left" and recs[0]["action"] is None
    assert recs[0]["alignment"]["method"] == "registered"
    assert C.load_config(out).num_classes == 5
    assert C.load_array(out, "depth", "clip1").shape == (4, 16, 16, 3)


def test_real_ntu_video_and_skeleton(tmp_path: Path, ntu_fixtures: Path) -> None:
    """The real 1080p NTU video and its .skeleton (fixtures, linked, not copied) with generated depth PNGs
    (no NTU depth map is public): the alignment lands in the range the fixtures README measured."""
    from modistill.data.depth import write_depth_frames

    name = "S001C001P001R001A001"
    src = tmp_path / "ntu"
    for sub, fname in (("nturgb+d_rgb", f"{name}_rgb.avi"), ("nturgb+d_skeletons", f"{name}.skeleton")):
        (src / sub).mkdir(parents=True)
        (src / sub / fname).symlink_to(ntu_fixtures / fname)
    # A plausible masked depth: a person-sized region 2.2-2.8 m away, 0 (masked) elsewhere.
    depth = np.zeros((103, 424, 512), np.uint16)
    depth[:, 100:350, 200:320] = np.linspace(2200, 2800, 120, dtype=np.uint16)[None, None, :]
    write_depth_frames(src / "nturgb+d_depth_masked" / name, depth)
    missing = ntu_fixtures / "NTU_RGBD_samples_with_missing_skeletons.txt"
    res = prepare_cache(tmp_path / "cache", src, options=OPTS, missing_list=missing)
    assert res.exit_status == 0, res.failures
    (rec,) = C.read_index(tmp_path / "cache")
    assert rec["source_frame_counts"] == {"rgb": 103, "depth": 103, "skeleton": 103} and rec["warnings"] == []
    a = rec["alignment"]
    assert a["method"] == "skeleton" and 2.85 <= a["scale"] <= 2.93
    # The README's offsets come from per-axis least squares (own slope per axis); with the paper's single
    # scale the y offset shifts by a few pixels, so its range is widened; the fit residual stays small.
    assert 219 <= a["tx"] <= 247 and -75 <= a["ty"] <= -25 and a["residual_px"] < 6, a
    rgb = C.load_array(tmp_path / "cache", "rgb", name)
    assert rgb.shape == (8, 32, 32, 3) and rgb.std() > 10  # real picture content, not a blank crop


def test_sigkill_mid_run_loses_nothing_finished(tmp_path: Path) -> None:
    """A real kill (SIGKILL, no cleanup) during a run, then a resume: every sample ends complete and valid."""
    names = [f"S001C001P{p:03d}R001A{a:03d}" for p in (1, 2, 3, 4, 5) for a in (1, 2)]
    src = make_ntu_root(tmp_path / "src", names, frames=12)
    out = tmp_path / "cache"
    args = ["--size", "32", "--frames", "8", "--workers", "0", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "modistill.cli", "prepare", str(src), str(out), *args])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if C.index_path(out).is_file() and C.index_path(out).read_text().count("\n") >= 2:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    before = [r["name"] for r in C.read_index(out)]
    assert 2 <= len(before) < len(names), "the kill should land mid-run"
    res = prepare_cache(out, src, options=PrepareOptions(size=32, frames=8))  # the CLI's jet default
    assert res.exit_status == 0 and sorted(res.skipped) == sorted(before)
    assert sorted(res.skipped + res.done) == sorted(names)
    for name in names:
        for m in ("rgb", "depth"):
            assert C.load_array(out, m, name, expect=(8, 32, 32, 3)).max() > 0
    leftovers = [p.name for d in (out, out / "rgb", out / "depth") for p in d.glob(".*.tmp")]
    assert leftovers == []  # a killed writer's temporary file is cleaned up by the next run
