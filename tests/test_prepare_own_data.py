"""`modistill prepare --manifest` on real registered RGB-D frames (Redwood, read in place), depth in wrong
units, depth video, retrying a failed prepare, and untrusted sample ids (issue 10, preparation side)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from modistill.cli import main
from modistill.data import cache as C
from modistill.data.depth import read_depth_frames, write_depth_video
from modistill.data.depth_units import to_millimetres
from modistill.data.paths import UnsafePathError, contained_path

REPO = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("MODISTILL_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))
REDWOOD = REAL / "rgbd_redwood"
BASE = ["--alignment", "registered", "--size", "16", "--frames", "5", "--workers", "0", "--quiet"]
HEADER = "sample,rgb,depth,label,subject,view,split,class_name\n"


@pytest.fixture(scope="module")
def redwood() -> Path:
    if not (REDWOOD / "depth" / "00000.png").is_file():
        pytest.skip(f"real Redwood RGB-D frames not found at {REDWOOD} (set MODISTILL_REAL_FIXTURES)")
    return REDWOOD


def _redwood_depth(redwood: Path) -> np.ndarray:
    return np.stack(
        [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((redwood / "depth").glob("*.png"))]
    )


def _write_depth_pngs(folder: Path, depth: np.ndarray) -> Path:
    """The Redwood naming (00000.png ...), not NTU's MDepth-%08d.png."""
    folder.mkdir(parents=True)
    for i, d in enumerate(depth):
        assert cv2.imwrite(str(folder / f"{i:05d}.png"), d)
    return folder


def _manifest(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_real_redwood_frames_through_a_manifest(tmp_path: Path, redwood: Path, capsys) -> None:
    """Registered RGB-D image sequences, read in place, non-NTU names, split and class names from the manifest;
    the same depth as a lossless 16-bit video gives the same cache."""
    video = write_depth_video(tmp_path / "room_depth.mkv", _redwood_depth(redwood))
    np.testing.assert_array_equal(read_depth_frames(video, range(5)), _redwood_depth(redwood))
    m = _manifest(
        tmp_path / "m.csv",
        [
            f"living_room,{redwood / 'color'},{redwood / 'depth'},1,alice,kinect_a,train,sit",
            f"living_room_video,{redwood / 'color'},{video},0,bob,kinect_b,test,stand",
        ],
    )
    out = tmp_path / "cache"
    assert main(["prepare", "--manifest", str(m), str(out), *BASE]) == 0
    cfg = C.load_config(out)
    assert (cfg.source, cfg.source_path, cfg.modalities) == ("manifest", str(m.resolve()), ("rgb", "depth"))
    assert (cfg.class_names, cfg.num_classes, cfg.depth_scale, cfg.depth_decode) == (
        ["stand", "sit"],
        2,
        1000.0,
        "plain",
    )
    recs = {r["name"]: r for r in C.read_index(out)}
    assert sorted(recs) == ["living_room", "living_room_video"]
    r = recs["living_room"]
    assert (r["split"], r["subject"], r["camera"], r["label"], r["action"]) == (
        "train",
        "alice",
        "kinect_a",
        1,
        None,
    )
    assert recs["living_room_video"]["split"] == "test" and r["alignment"]["method"] == "registered"
    assert r["warnings"] == [] and C.read_warnings(out) == []  # real depth in mm passes the check
    assert r["source_frame_counts"] == {"rgb": 5, "depth": 5, "skeleton": None}
    # PNG sequence and FFV1 video hold the same 16-bit values: the cached depth is identical.
    np.testing.assert_array_equal(
        C.load_array(out, "depth", "living_room"), C.load_array(out, "depth", "living_room_video")
    )
    # The cached RGB is the real colour frame, resized.
    first = cv2.cvtColor(cv2.imread(str(redwood / "color" / "00000.jpg")), cv2.COLOR_BGR2RGB)
    want = cv2.resize(first, (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(C.load_array(out, "rgb", "living_room")[0], want)
    assert "2 prepared" in capsys.readouterr().out


def test_wrong_depth_units_are_flagged_and_the_rest_completes(tmp_path: Path, redwood: Path) -> None:
    """TUM-style (5000/m) and SUN RGB-D (bit-rotated) copies of the real depth, read as millimetres, are
    failures naming the problem while the good sample is prepared; the right preset gives the same arrays."""
    d = _redwood_depth(redwood)
    tum = _write_depth_pngs(tmp_path / "tum", d * np.uint16(5))  # max 2.7 m * 5000 < 65536
    sun = _write_depth_pngs(tmp_path / "sun", (d << np.uint16(3)) | (d >> np.uint16(13)))
    color = redwood / "color"
    rows = [
        f"good,{color},{redwood / 'depth'},0,a,1,,",
        f"tum,{color},{tum},0,a,1,,",
        f"sun,{color},{sun},0,a,1,,",
    ]
    m = _manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "mm"
    assert main(["prepare", "--manifest", str(m), str(out), *BASE]) == 3
    assert [r["name"] for r in C.read_index(out)] == ["good"]
    fails = {f["sample"]: f for f in C.read_failures(out)}
    assert sorted(fails) == ["sun", "tum"] and {f["stage"] for f in fails.values()} == {"depth"}
    assert "100% of the readings lie beyond --far-mm 4500 mm" in fails["tum"]["error"]
    assert "median 9.3 m" in fails["tum"]["error"] and str(tum) in fails["tum"]["error"]
    assert "median 14.9 m" in fails["sun"]["error"]
    good = C.load_array(out, "depth", "good")
    # The presets recover exactly the millimetre arrays.
    for name, preset in (("tum", "tum"), ("sun", "sunrgbd")):
        m1 = _manifest(tmp_path / f"{name}.csv", [r for r in rows if r.startswith(name)])
        o = tmp_path / f"c_{name}"
        assert main(["prepare", "--manifest", str(m1), str(o), *BASE, "--depth-scale", preset]) == 0
        np.testing.assert_array_equal(C.load_array(o, "depth", name), good)
        assert C.load_config(o).depth_scale in (5000.0, 1000.0)
    assert C.load_config(tmp_path / "c_sun").depth_decode == "sunrgbd"
    # --depth-check warn keeps the sample and lists the finding in the warnings file.
    o = tmp_path / "warn"
    assert main(["prepare", "--manifest", str(m), str(o), *BASE, "--depth-check", "warn"]) == 0
    warned = C.read_warnings(o)
    assert {w["sample"] for w in warned} == {"sun", "tum"} and all(
        "depth check" in w["warning"] for w in warned
    )


def test_depth_warnings_go_to_the_warnings_file(tmp_path: Path, redwood: Path) -> None:
    """Sparse depth (0.02 % of the pixels) and depth far beyond the range are warnings, not failures."""
    d = _redwood_depth(redwood)
    sparse = np.zeros_like(d)
    sparse[:, 200:210, 300:306] = d[:, 200:210, 300:306]
    far = d.copy()
    far[:, :, :256] = 6000  # 40 % of the frame (44 % of the readings) beyond 4.5 m
    rows = [
        f"sparse,{redwood / 'color'},{_write_depth_pngs(tmp_path / 's', sparse)},0,a,1,,",
        f"far,{redwood / 'color'},{_write_depth_pngs(tmp_path / 'f', far)},0,a,1,,",
    ]
    out = tmp_path / "c"
    assert main(["prepare", "--manifest", str(_manifest(tmp_path / "m.csv", rows)), str(out), *BASE]) == 0
    w: dict[str, list[str]] = {}
    for x in C.read_warnings(out):
        w.setdefault(x["sample"], []).append(x["warning"])
    assert "depth check: only 0.02% of the pixels have a depth reading" in w["sparse"]
    assert w["far"] == ["depth check: 44% of the readings lie beyond --far-mm 4500 mm (one colour)"]
    assert {r["name"]: r["warnings"] for r in C.read_index(out)} == w


def test_nyu_raw_is_refused_and_a_bad_scale_is_an_error(tmp_path: Path, capsys) -> None:
    m = _manifest(tmp_path / "m.csv", ["x,v.mp4,d,0,a,1,,"])
    assert main(["prepare", "--manifest", str(m), str(tmp_path / "c"), "--depth-scale", "nyu-raw"]) == 2
    assert "disparity" in capsys.readouterr().err
    assert main(["prepare", "--manifest", str(m), str(tmp_path / "c"), "--depth-scale", "-3"]) == 2
    assert "positive" in capsys.readouterr().err


def test_failed_prepare_can_be_retried_with_corrected_settings(tmp_path: Path, redwood: Path, capsys) -> None:
    """All samples failed (wrong units): the retry with the right scale takes the new settings. Once samples
    are finished, other settings are refused with what to do, and --restart starts over."""
    tum = _write_depth_pngs(tmp_path / "tum", _redwood_depth(redwood) * np.uint16(5))
    m = _manifest(tmp_path / "m.csv", [f"clip,{redwood / 'color'},{tum},0,a,1,,"])
    out = tmp_path / "c"
    assert main(["prepare", "--manifest", str(m), str(out), *BASE]) == 3
    assert C.load_config(out).depth_scale == 1000.0 and C.read_index(out) == []
    capsys.readouterr()
    assert main(["prepare", "--manifest", str(m), str(out), *BASE, "--depth-scale", "5000"]) == 0
    err = capsys.readouterr().err
    assert "no sample was finished with the old settings" in err and "replaced" in err
    assert C.load_config(out).depth_scale == 5000.0 and [r["name"] for r in C.read_index(out)] == ["clip"]
    assert C.read_failures(out) == []
    other = ["--size", "24"]
    assert main(["prepare", "--manifest", str(m), str(out), *BASE, "--depth-scale", "tum", *other]) == 2
    err = capsys.readouterr().err
    assert (
        "holds 1 sample(s) prepared with other settings (size: 16 (cache) vs 24" in err and "--restart" in err
    )
    (out / "notes.txt").write_text("mine")  # not written by prepare: --restart leaves it alone
    assert (
        main(["prepare", "--manifest", str(m), str(out), *BASE, "--depth-scale", "tum", *other, "--restart"])
        == 0
    )
    assert (
        C.load_array(out, "rgb", "clip").shape == (5, 24, 24, 3) and (out / "notes.txt").read_text() == "mine"
    )


@pytest.mark.parametrize("bad", ["../x", "../../escaped", "/tmp/abs_id", "a/b", "a\\b", ".hidden", "x y"])
def test_untrusted_sample_ids_are_refused_and_nothing_is_written(tmp_path: Path, bad: str, capsys) -> None:
    work = tmp_path / "w"
    (work / "data").mkdir(parents=True)
    video = work / "data" / "v.avi"
    video.write_bytes(b"")
    m = work / "data" / "m.jsonl"
    m.write_text(
        '{"sample": "fine", "rgb": "v.avi", "label": 0, "subject": 1, "view": 1}\n'
        + f'{{"sample": {bad!r}, "rgb": "v.avi", "label": 0, "subject": 1, "view": 1}}\n'.replace("'", '"')
    )
    before = {p for p in tmp_path.rglob("*")}
    assert main(["prepare", "--manifest", str(m), str(work / "cache"), "--workers", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{m}:2: sample id" in err and "modistill: error:" in err
    assert {p for p in tmp_path.rglob("*")} == before  # nothing written anywhere, inside or outside
    assert not Path("/tmp/abs_id.npy").exists()


def test_cache_paths_stay_under_the_cache(tmp_path: Path) -> None:
    for name in ("../x", "/etc/passwd", "a/b", ".."):
        with pytest.raises(UnsafePathError):
            C.array_path(tmp_path, "rgb", name)
    with pytest.raises(UnsafePathError, match="sample id"):
        C.array_path(tmp_path, "../rgb", "ok")
    for parts in (("rgb", "..", "..", "x.npy"), ("/etc", "x"), ("..",)):
        with pytest.raises(UnsafePathError, match="outside the cache folder"):
            contained_path(tmp_path, *parts)
    assert (
        C.array_path(tmp_path, "rgb", "v_ApplyEyeMakeup_g01_c01")
        == tmp_path / "rgb" / "v_ApplyEyeMakeup_g01_c01.npy"
    )


def test_to_millimetres_keeps_mm_exact() -> None:
    d = np.array([[0, 5000, 12345]], np.uint16)
    assert to_millimetres(d, 1000.0) is d
    np.testing.assert_allclose(to_millimetres(d, 5000.0), [[0, 1000, 2469]])
