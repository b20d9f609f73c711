"""Readers for users' own data: manifest split/class columns and classes files, frame-image folders, generic
16-bit PNG sequences, 16-bit depth video, depth units and the depth check, sample-id rules."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from modistill.data import cache as C
from modistill.data.classes import ClassNamesError, manifest_class_names, read_classes
from modistill.data.depth import DepthReadError, depth_frame_count, read_depth_frames, write_depth_video
from modistill.data.depth_units import (
    DEPTH_PRESETS,
    DepthUnits,
    DepthUnitsError,
    check_depth,
    decode_depth,
    parse_depth_units,
)
from modistill.data.manifest import ManifestError, read_manifest, write_manifest
from modistill.data.paths import is_safe_id
from modistill.data.video import VideoReadError, read_video_frames, video_frame_count, write_video

HEAD = "sample,rgb,label,subject,view,split,class_name\n"


def test_manifest_split_and_class_name_columns(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text(HEAD + "a,v.mp4,1,s1,0,train,wave\nb,v.mp4,0,s2,0,val,sit\nc,v.mp4,1,s3,0,test,wave\n")
    es = read_manifest(p)
    assert [(e.split, e.class_name) for e in es] == [("train", "wave"), ("val", "sit"), ("test", "wave")]
    assert manifest_class_names(es) == (["sit", "wave"], [])
    write_manifest(tmp_path / "again.jsonl", es)
    assert read_manifest(tmp_path / "again.jsonl") == [e for e in es]
    cases = {
        "a,v.mp4,1,s,0,training,x\n": r"m\.csv:2: split must be one of train, val, test",
        "a,v.mp4,1,s,0,train,x\nb,v.mp4,1,s,0,,x\n": r"m\.csv:3: split is empty here but given on line 2",
        "a,v.mp4,1,s,0,,x\nb,v.mp4,1,s,0,,y\n": r"m\.csv:3: label 1 is named 'y' here but 'x' at .*m\.csv:2",
        "a,v.mp4,1,s,0,,x\nb,v.mp4,2,s,0,,x\n": r"m\.csv:3: class_name 'x' is label 2 here but label 1",
        "Clip,v.mp4,1,s,0,,\nclip,v.mp4,1,s,0,,\n": r"m\.csv:3: sample id 'clip' differs from 'Clip' \(line 2\)",
    }
    for body, match in cases.items():
        p.write_text(HEAD + body)
        with pytest.raises(ManifestError, match=match):
            read_manifest(p)


def test_classes_file(tmp_path: Path) -> None:
    f = tmp_path / "classes.txt"
    f.write_text("sit\nstand\r\nwave\n\n\n")
    assert read_classes(f) == ["sit", "stand", "wave"]
    m = tmp_path / "m.csv"
    m.write_text(HEAD + "a,v.mp4,2,s,0,,\nb,v.mp4,0,s,0,,sit\n")
    es = read_manifest(m, classes=read_classes(f))
    assert manifest_class_names(es, read_classes(f)) == (["sit", "stand", "wave"], [])
    m.write_text(HEAD + "a,v.mp4,3,s,0,,\n")
    with pytest.raises(ManifestError, match=r"m\.csv:2: label 3 is outside the 3 classes"):
        read_manifest(m, classes=read_classes(f))
    m.write_text(HEAD + "a,v.mp4,1,s,0,,sit\n")
    with pytest.raises(ManifestError, match=r"disagrees with the classes file, which names label 1 'stand'"):
        read_manifest(m, classes=read_classes(f))
    for text, match in (
        ("a\n\nb\n", r":2: empty line"),
        ("a\nb\na\n", r":3: class 'a' is listed twice"),
        ("", "no"),
    ):
        f.write_text(text)
        with pytest.raises(ClassNamesError, match=match):
            read_classes(f)
    # Labels no row names get a placeholder, and the caller is told which.
    m.write_text(HEAD + "a,v.mp4,2,s,0,,wave\n")
    assert manifest_class_names(read_manifest(m)) == (["class_0", "class_1", "wave"], [0, 1])


def test_frame_folder_is_a_video(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i + 7}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))  # numbered 7, 8, 9
    (tmp_path / "notes.txt").write_text("ignored")
    assert video_frame_count(tmp_path) == 3
    np.testing.assert_array_equal(read_video_frames(tmp_path, [2, 0, 2]), frames[[2, 0, 2]])
    np.testing.assert_array_equal(read_video_frames(tmp_path), frames)
    with pytest.raises(VideoReadError, match="frame index 3 requested but the video has only 3 frames"):
        read_video_frames(tmp_path, [3])
    (tmp_path / "8.png").unlink()
    with pytest.raises(VideoReadError, match="number 8 is missing"):
        video_frame_count(tmp_path)


def test_generic_png_depth_sequence_and_depth_video(tmp_path: Path) -> None:
    d = np.random.default_rng(1).integers(0, 65535, (4, 6, 8), dtype=np.uint16)
    seq = tmp_path / "seq"
    seq.mkdir()
    for i, x in enumerate(d):
        cv2.imwrite(str(seq / f"{i:05d}.png"), x)
    assert depth_frame_count(seq) == 4
    np.testing.assert_array_equal(read_depth_frames(seq, [3, 1]), d[[3, 1]])
    v = write_depth_video(tmp_path / "d.mkv", d)
    assert depth_frame_count(v) == 4
    np.testing.assert_array_equal(read_depth_frames(v, [0, 3, 3]), d[[0, 3, 3]])  # lossless
    with pytest.raises(DepthReadError, match="frame index 4 requested"):
        read_depth_frames(v, [4])
    rgb = tmp_path / "rgb.avi"  # an 8-bit video is not depth: refused, not converted
    write_video(rgb, np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(DepthReadError, match="pixel format yuv420p is not 16-bit grey"):
        read_depth_frames(rgb, [0])
    (seq / "00002.png").unlink()
    with pytest.raises(DepthReadError, match="number 2 is missing"):
        read_depth_frames(seq, [0])


def test_depth_presets_and_decoding() -> None:
    assert parse_depth_units("kinect") == parse_depth_units("NTU") == DEPTH_PRESETS["mm"]
    assert parse_depth_units("1000").scale == 1000.0
    assert parse_depth_units("1000").scale == 1000.0 and parse_depth_units("tum").scale == 5000.0
    assert parse_depth_units("2.5e3") == DepthUnits("custom", 2500.0)
    for bad, match in (("nyu-raw", "disparity"), ("0", "positive"), ("feet", "expected units per metre")):
        with pytest.raises(DepthUnitsError, match=match):
            parse_depth_units(bad)
    # SUN RGB-D: stored = value rotated left by 3 bits; 1234 mm = 0b10011010010 -> stored 9872; and a value
    # whose top bits wrap: 0xE001 rotated left 3 -> 0x000F.
    stored = np.array([9872, 0x000F, 0], np.uint16)
    np.testing.assert_array_equal(decode_depth(stored, "sunrgbd"), [1234, 0xE001, 0])
    assert decode_depth(stored, "plain") is stored


def test_depth_check_limits() -> None:
    mm = DEPTH_PRESETS["mm"]
    ramp = np.linspace(1000, 3000, 64 * 64).astype(np.uint16).reshape(1, 64, 64)
    ok = check_depth(ramp, mm, 500, 4500)
    assert ok.failure is None and ok.warnings == [] and ok.stats["median_m"] == pytest.approx(2.0, abs=1e-3)
    far = check_depth(ramp * np.uint16(3), mm, 500, 4500)  # 3-9 m: 75 % beyond 4.5 m -> warn, median 6 m ok
    assert far.failure is None and far.warnings == [
        "depth check: 75% of the readings lie beyond --far-mm 4500 mm (one colour)"
    ]
    assert "beyond --far-mm" in check_depth(ramp * np.uint16(5), mm, 500, 4500).failure  # 100 % > 4.5 m
    tiny = check_depth(ramp // np.uint16(30), mm, 500, 4500)  # 33-100 "mm": median 0.067 m
    assert "median reading 0.066 m" in tiny.failure and "outside 0.1-20.0 m" in tiny.failure
    flat = check_depth(np.full((2, 8, 8), 2000, np.uint16), mm, 500, 4500)
    assert flat.failure is None and flat.warnings == [
        "depth check: only 1 distinct depth values (a mask, a constant, or depth in coarse units?)"
    ]
    empty = check_depth(np.zeros((2, 8, 8), np.uint16), mm, 500, 4500)
    assert empty.failure is None and "no depth reading" in empty.warnings[0]


def test_sample_id_rule() -> None:
    good = [
        "S001C001P001R001A001",
        "v_YoYo_g01_c01",
        "THE_PROTECTOR_(_Tony_Jaa_)_kick_f_cm_np1_ri_med_1",
        "#20_x!",
    ]
    bad = ["", "..", ".x", "-x", "a/b", "a\\b", "/abs", "C:x", "a b", "a..b", "é", "a\x00", "x" * 201]
    assert all(is_safe_id(n) for n in good) and not any(is_safe_id(n) for n in bad)


def test_clear_cache_removes_only_what_prepare_wrote(tmp_path: Path) -> None:
    for rel in ("cache_config.json", "samples.txt", "index.jsonl", "failures.shard-0-of-2.jsonl", "warnings.jsonl",
                "rgb/a.npy", "flow/a.npy", "depth/.a.npy.host.1.abc.tmp", "rgb/keep.txt", "mine.txt"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert C.clear_cache(tmp_path) == 8
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == ["mine.txt", "rgb", "rgb/keep.txt"]


def test_cache_config_without_depth_holds_no_depth_settings() -> None:
    cfg = C.CacheConfig(size=16, frames=4, depth_encoding=None, modalities=("rgb", "flow"))
    assert cfg.depth_scale is None and cfg.flow_bound is None
    with pytest.raises(ValueError, match="depth encoding"):
        C.CacheConfig(size=16, frames=4, depth_encoding=None, modalities=("rgb", "depth"))
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        C.CacheConfig(size=16, frames=4, num_classes=3, class_names=["a", "b"])
