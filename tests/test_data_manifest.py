"""The generic CSV/JSONL manifest and its NTU builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from modistill.data import ManifestEntry, ManifestError, ntu_manifest, read_manifest, write_manifest


def _entries(base: Path) -> list[ManifestEntry]:
    return [
        ManifestEntry(
            sample="clip_a",
            rgb=base / "videos" / "a.mp4",
            depth=base / "depth" / "a",
            skeleton=None,
            label=0,
            subject="alice",
            view=1,
            setup=None,
        ),
        ManifestEntry(
            sample="S001C002P003R002A013",
            rgb=base / "videos" / "b.avi",
            depth=None,
            skeleton=base / "sk" / "b.skeleton",
            label=12,
            subject=3,
            view=2,
            setup=1,
        ),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip_relative_paths(tmp_path, suffix):
    base = tmp_path / "data"
    entries = _entries(base)
    path = base / f"manifest{suffix}"
    write_manifest(path, entries)
    text = path.read_text()
    assert str(tmp_path) not in text  # paths below the manifest's folder are stored relative
    assert "videos/a.mp4" in text
    back = read_manifest(path)
    assert back == entries
    # moving the folder keeps the manifest valid
    moved = tmp_path / "moved"
    base.rename(moved)
    again = read_manifest(moved / f"manifest{suffix}")
    assert again[0].rgb == moved / "videos" / "a.mp4" and again[1].skeleton == moved / "sk" / "b.skeleton"


def test_absolute_paths_outside_folder_are_kept(tmp_path):
    e = _entries(tmp_path / "elsewhere")
    write_manifest(tmp_path / "m" / "x.csv", e)
    assert read_manifest(tmp_path / "m" / "x.csv")[0].rgb == tmp_path / "elsewhere" / "videos" / "a.mp4"


HEADER = "sample,rgb,depth,skeleton,label,subject,view,setup\n"


@pytest.mark.parametrize(
    "body,match",
    [
        ("a,v.mp4,d,,x,1,1,\n", r"m\.csv:2: label must be an integer"),
        ("a,v.mp4,d,,-1,1,1,\n", r"m\.csv:2: label must be 0-based"),
        ("a,,d,,1,1,1,\n", r"m\.csv:2: required field 'rgb'"),
        ("a,v.mp4,d,,1,1,1,\nb,v.mp4,d,,1,1\n", r"m\.csv:3: 6 values for 8 header columns"),
        (
            "a,v.mp4,d,,1,1,1,\n\na,w.mp4,d,,1,1,1,\n",
            r"m\.csv:4: duplicate sample id 'a' \(first on line 2\)",
        ),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, body, match):
    p = tmp_path / "m.csv"
    p.write_text(HEADER + body)
    with pytest.raises(ManifestError, match=match):
        read_manifest(p)


def test_more_errors(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("sample,rgb,label,subject,view,colour\na,v.mp4,1,1,1,red\n")
    with pytest.raises(ManifestError, match=r"m\.csv:2: unknown field\(s\) \['colour'\]"):
        read_manifest(p)
    p.write_text("a,v.mp4,1,1,1\n")
    with pytest.raises(ManifestError, match=r"m\.csv:1: the first row must be a header"):
        read_manifest(p)
    j = tmp_path / "m.jsonl"
    j.write_text('{"sample": "a", "rgb": "v.mp4", "label": 1, "subject": 1, "view": 1}\n\n{"sample": "b", \n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: invalid JSON"):
        read_manifest(j)
    j.write_text('{"sample": "a", "rgb": "v.mp4", "label": true, "subject": 1, "view": 1}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: label must be an integer"):
        read_manifest(j)
    j.write_text('{"sample": "a", "rgb": "v.mp4", "label": 2, "subject": 1, "view": 1}\n')
    assert read_manifest(j)[0].depth is None
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: rgb path .*v\.mp4 does not exist"):
        read_manifest(j, check_files=True)
    with pytest.raises(ManifestError, match="unknown manifest format '.txt'"):
        read_manifest(tmp_path / "m.txt")


def _ntu_root(tmp_path: Path) -> Path:
    root = tmp_path / "ntu"
    for name in ("S001C001P001R001A001", "S001C002P003R002A013", "S002C003P008R001A058"):
        (root / "nturgb+d_rgb").mkdir(parents=True, exist_ok=True)
        (root / "nturgb+d_rgb" / f"{name}_rgb.avi").write_bytes(b"")
        (root / "nturgb+d_depth_masked" / name).mkdir(parents=True)
        (root / "nturgb+d_skeletons").mkdir(exist_ok=True)
        (root / "nturgb+d_skeletons" / f"{name}.skeleton").write_text("0\n")
    return root


def test_ntu_manifest(tmp_path):
    root = _ntu_root(tmp_path)
    entries = ntu_manifest(root, missing_list={"S001C002P003R002A013"})
    assert [e.sample for e in entries] == [
        "S001C001P001R001A001",
        "S001C002P003R002A013",
        "S002C003P008R001A058",
    ]
    e = entries[2]
    assert (e.label, e.subject, e.view, e.setup) == (57, 8, 3, 2)
    assert e.rgb == root / "nturgb+d_rgb" / "S002C003P008R001A058_rgb.avi"
    assert e.depth == root / "nturgb+d_depth_masked" / "S002C003P008R001A058"
    assert entries[1].skeleton is None and entries[0].skeleton is not None  # on the missing list
    write_manifest(root / "manifest.csv", entries)
    assert read_manifest(root / "manifest.csv", check_files=True) == entries
    # a sample lacking depth is an error by default, left out on request
    (root / "nturgb+d_rgb" / "S003C001P001R001A002_rgb.avi").write_bytes(b"")
    with pytest.raises(ManifestError, match="S003C001P001R001A002 has no depth data"):
        ntu_manifest(root)
    assert len(ntu_manifest(root, on_missing="skip")) == 3
    assert [e.sample for e in ntu_manifest(root, names=["S001C001P001R001A001"])] == ["S001C001P001R001A001"]
    with pytest.raises(ManifestError, match="not an NTU root"):
        ntu_manifest(tmp_path / "empty")
