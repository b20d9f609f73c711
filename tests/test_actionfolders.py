"""modistill.data.actionfolders: UCF101 / HMDB51 layouts on small generated folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modistill.data.actionfolders import LayoutError, hmdb51_entries, ucf101_entries
from modistill.data.video import read_video_frames, write_video

UCF_CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]


def _tiny_video(path: Path, seed: int) -> None:
    frames = np.random.default_rng(seed).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    write_video(path, frames, fps=25)


def _make_ucf(root: Path, crlf: bool = True) -> Path:
    """3 classes x 2 groups x 1 clip; split 1: group 1 -> test, group 2 -> train (as the official lists)."""
    sdir = root / "ucfTrainTestlist"
    sdir.mkdir(parents=True)
    nl = "\r\n" if crlf else "\n"
    (sdir / "classInd.txt").write_text(nl.join(f"{i} {c}" for i, c in enumerate(UCF_CLASSES, 1)) + nl)
    train, test = [], []
    for i, c in enumerate(UCF_CLASSES, 1):
        file_c = "HandStandPushups" if c == "HandstandPushups" else c  # the official file-name spelling
        for g in (1, 2):
            rel = f"{c}/v_{file_c}_g{g:02d}_c01.avi"
            (root / c).mkdir(exist_ok=True)
            _tiny_video(root / rel, seed=10 * i + g)
            (test if g == 1 else train).append(rel if g == 1 else f"{rel} {i}")
    (sdir / "trainlist01.txt").write_text(nl.join(train) + nl)
    (sdir / "testlist01.txt").write_text(nl.join(test) + nl)
    return sdir


def test_ucf101_entries(tmp_path):
    _make_ucf(tmp_path)
    vl = ucf101_entries(tmp_path, split=1)
    assert vl.class_names == UCF_CLASSES
    assert len(vl.entries) == 6
    train, test = vl.subset("train"), vl.subset("test")
    assert [e.sample for e in train] == [
        "v_ApplyEyeMakeup_g02_c01",
        "v_HandStandPushups_g02_c01",
        "v_YoYo_g02_c01",
    ]
    assert [e.label for e in train] == [0, 1, 2] and [e.label for e in test] == [0, 1, 2]
    assert {e.group for e in train} == {"g02"} and {e.group for e in test} == {"g01"}
    e = test[1]
    assert (
        e.class_name == "HandstandPushups" and e.path == (tmp_path / e.path.relative_to(tmp_path)).resolve()
    )
    assert e.to_dict()["path"] == str(e.path) and e.to_dict()["split"] == "test"
    assert read_video_frames(e.path, [0, 7]).shape == (2, 32, 32, 3)  # entries point at real videos
    with pytest.raises(ValueError, match="official split"):
        ucf101_entries(tmp_path, split=4)


def test_ucf101_errors_name_file_and_line(tmp_path):
    sdir = _make_ucf(tmp_path, crlf=False)
    train = sdir / "trainlist01.txt"
    good = train.read_text()

    train.write_text(good + "Juggling/v_Juggling_g02_c01.avi 4\n")
    with pytest.raises(LayoutError, match=r"trainlist01.txt:4: unknown class folder 'Juggling'"):
        ucf101_entries(tmp_path)

    train.write_text(good.replace("avi 3", "avi 2"))
    with pytest.raises(LayoutError, match=r"trainlist01.txt:3: label '2' does not match class 'YoYo'"):
        ucf101_entries(tmp_path)

    train.write_text(good + "YoYo/v_YoYo_g03_c01.avi 3\n")
    with pytest.raises(LayoutError, match=r"trainlist01.txt:4: video not found: .*v_YoYo_g03_c01.avi"):
        ucf101_entries(tmp_path)
    assert len(ucf101_entries(tmp_path, check_files=False).subset("train")) == 4

    train.write_text(good + "yoyo/v_YoYo_g03_c01.avi 3\n")  # class folder matched case-insensitively
    assert ucf101_entries(tmp_path, check_files=False).subset("train")[-1].class_name == "YoYo"

    train.write_text(good + "YoYo/v_YoYo_g01_c01.avi 3\n")  # a test video also in train
    with pytest.raises(LayoutError, match=r"testlist01.txt:3: video 'v_YoYo_g01_c01' listed twice"):
        ucf101_entries(tmp_path)

    train.write_text(good + "YoYo/v_YoYo_g02_c01.avi\n")  # train lines need a label
    with pytest.raises(LayoutError, match=r"trainlist01.txt:4: expected"):
        ucf101_entries(tmp_path)

    train.write_text(good)
    (sdir / "classInd.txt").write_text("1 ApplyEyeMakeup\n3 YoYo\n")
    with pytest.raises(LayoutError, match=r"classInd.txt: class ids must be 1..2"):
        ucf101_entries(tmp_path)
    (sdir / "classInd.txt").unlink()
    with pytest.raises(LayoutError, match=r"classInd.txt: split file not found"):
        ucf101_entries(tmp_path)


def _make_hmdb(root: Path) -> Path:
    sdir = root / "testTrainMulti_7030_splits"
    sdir.mkdir(parents=True)
    for ci, cls in enumerate(["brush_hair", "cartwheel"]):
        (root / cls).mkdir()
        lines = []
        for k, tag in enumerate([1, 1, 2, 0]):
            name = f"{cls}_clip_{k}.avi"
            if tag:  # an unused video need not exist
                _tiny_video(root / cls / name, seed=100 * ci + k)
            lines.append(f"{name} {tag} ")  # the official files have a trailing blank
        (sdir / f"{cls}_test_split1.txt").write_text("\r\n".join(lines) + "\r\n")
    return sdir


def test_hmdb51_entries(tmp_path):
    _make_hmdb(tmp_path)
    vl = hmdb51_entries(tmp_path, split=1)
    assert vl.class_names == ["brush_hair", "cartwheel"]
    assert vl.unused == 2
    assert [(e.sample, e.label, e.split) for e in vl.entries] == [
        ("brush_hair_clip_0", 0, "train"),
        ("brush_hair_clip_1", 0, "train"),
        ("brush_hair_clip_2", 0, "test"),
        ("cartwheel_clip_0", 1, "train"),
        ("cartwheel_clip_1", 1, "train"),
        ("cartwheel_clip_2", 1, "test"),
    ]
    # group = the source movie: these names have no "_<class>_" inside, so the clip number is dropped.
    assert all(e.path.is_file() and e.group == e.sample.rsplit("_", 1)[0] for e in vl.entries)
    with pytest.raises(LayoutError, match="no '<class>_test_split2.txt' split files"):
        hmdb51_entries(tmp_path, split=2)


def test_hmdb51_errors_name_file_and_line(tmp_path):
    sdir = _make_hmdb(tmp_path)
    f = sdir / "cartwheel_test_split1.txt"
    good = f.read_text()
    f.write_text(good + "cartwheel_clip_9.avi 3\n")
    with pytest.raises(LayoutError, match=r"cartwheel_test_split1.txt:5: expected '<video>.avi <0\|1\|2>'"):
        hmdb51_entries(tmp_path)
    f.write_text(good + "cartwheel_clip_9.avi 2\n")
    with pytest.raises(
        LayoutError, match=r"cartwheel_test_split1.txt:5: video not found: .*cartwheel_clip_9"
    ):
        hmdb51_entries(tmp_path)
    f.write_text(good + "cartwheel_clip_0.avi 2\n")
    with pytest.raises(
        LayoutError, match=r"cartwheel_test_split1.txt:5: video 'cartwheel_clip_0' listed twice"
    ):
        hmdb51_entries(tmp_path)
    f.write_text(good)
    (sdir / "dive_test_split1.txt").write_text("dive_1.avi 1\n")  # a class without a folder
    with pytest.raises(LayoutError, match=r"dive_test_split1.txt: class folder .*dive not found"):
        hmdb51_entries(tmp_path)
    with pytest.raises(LayoutError, match="split folder not found"):
        hmdb51_entries(tmp_path, split_dir=tmp_path / "nope")
