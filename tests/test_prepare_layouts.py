"""`modistill prepare --layout ucf101|hmdb51 --split N` and RGB-only / flow manifests, from the CLI, on the real
UCF101 and Kinetics clips (read in place through symbolic links; issue 10, preparation side)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modistill.cli import main
from modistill.data import cache as C
from modistill.data.prepare_flow import flow_settings
from modistill.data.video import video_frame_count

REPO = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("MODISTILL_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))
UCF_CLIP = REAL / "video_ucf101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi"
KINETICS = REAL / "video_kinetics"
JOB = ["--size", "16", "--frames", "4", "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def ucf_clip() -> Path:
    if not UCF_CLIP.is_file():
        pytest.skip(f"real UCF101 clip not found at {UCF_CLIP} (set MODISTILL_REAL_FIXTURES)")
    return UCF_CLIP


def make_ucf101_tree(root: Path, clip: Path) -> Path:
    """Two classes x two groups, every video a link to the real clip; official-format split 1 files
    (classInd 1-based; group 1 is test, the others train, as in the official lists)."""
    classes = ["ApplyEyeMakeup", "YoYo"]
    train, test = [], []
    for i, c in enumerate(classes, 1):
        (root / c).mkdir(parents=True)
        for g in (1, 8):
            rel = f"{c}/v_{c}_g{g:02d}_c01.avi"
            (root / rel).symlink_to(clip)
            (test if g == 1 else train).append(rel if g == 1 else f"{rel} {i}")
    sdir = root / "ucfTrainTestlist"
    sdir.mkdir()
    (sdir / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(classes, 1)))
    (sdir / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n")
    (sdir / "testlist01.txt").write_text("\r\n".join(test) + "\r\n")
    return root


def test_ucf101_tree_prepares_with_flow(tmp_path: Path, ucf_clip: Path, capsys) -> None:
    root = make_ucf101_tree(tmp_path / "UCF-101", ucf_clip)
    out = tmp_path / "cache"
    args = ["prepare", str(root), str(out), "--layout", "ucf101", "--split", "1", "--flow", "dis", *JOB]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "4 prepared" in printed and "flow (dis, L=1, bound 20 px) for 4 samples" in printed
    cfg = C.load_config(out)
    assert (cfg.source, cfg.source_path, cfg.source_split) == ("ucf101", str(root.resolve()), 1)
    assert cfg.modalities == ("rgb", "flow") and cfg.depth_encoding is None and cfg.depth_scale is None
    assert (cfg.class_names, cfg.num_classes, cfg.flow_bound) == (["ApplyEyeMakeup", "YoYo"], 2, 20.0)
    recs = {r["name"]: r for r in C.read_index(out)}
    r = recs["v_YoYo_g01_c01"]
    assert (r["split"], r["subject"], r["camera"], r["label"]) == ("test", "g01", None, 1)
    assert recs["v_ApplyEyeMakeup_g08_c01"]["split"] == "train" and r["alignment"]["method"] == "none"
    assert r["source_frame_counts"]["rgb"] == video_frame_count(ucf_clip) == 164
    for n in recs:
        assert C.load_array(out, "flow", n).shape == (4, 16, 16, 2)
    # Flow was computed on the real frames (at 16 px this clip's motion spans only a few quantisation levels
    # of the default 20 px bound: what --flow-bound is for).
    assert np.unique(C.load_array(out, "flow", "v_YoYo_g01_c01")).size > 1
    # Running again resumes: nothing to do, and the flow pass finds the videos through the recorded source.
    assert (
        main(["prepare", str(root), str(out), "--layout", "ucf101", "--split", "1", "--flow", "dis", *JOB])
        == 0
    )
    assert "4 already done" in capsys.readouterr().out
    # Without --flow, the RGB pass alone: the flow it recorded stays in the config.
    assert main(["prepare", str(root), str(out), "--layout", "ucf101", "--split", "1", *JOB]) == 0
    assert C.load_config(out).modalities == ("rgb", "flow") and C.load_config(out).flow_bound == 20.0


def test_ucf101_split_files_cannot_leave_the_tree(tmp_path: Path, ucf_clip: Path, capsys) -> None:
    root = make_ucf101_tree(tmp_path / "UCF-101", ucf_clip)
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text("ApplyEyeMakeup/../../../outside.avi\n")
    assert main(["prepare", str(root), str(tmp_path / "c"), "--layout", "ucf101", "--split", "1", *JOB]) == 2
    assert "testlist01.txt:1: video path" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_layout_needs_a_split_and_a_plain_root_names_the_option(
    tmp_path: Path, ucf_clip: Path, capsys
) -> None:
    root = make_ucf101_tree(tmp_path / "UCF-101", ucf_clip)
    assert main(["prepare", str(root), str(tmp_path / "c"), "--layout", "ucf101"]) == 2
    assert "--split" in capsys.readouterr().err
    assert main(["prepare", str(root), str(tmp_path / "c"), *JOB]) == 2
    assert "--layout ucf101|hmdb51 --split N" in capsys.readouterr().err
    assert main(["prepare", str(root), str(tmp_path / "c"), "--layout", "ucf101", "--split", "1",
                 "--modalities", "rgb,depth", *JOB]) == 2  # fmt: skip
    assert "no sample has depth" in capsys.readouterr().err
    assert main(["prepare", str(root), str(tmp_path / "c"), "--classes", "names.txt", *JOB]) == 2
    assert "--classes FILE names the classes of a manifest" in capsys.readouterr().err


def test_hmdb51_tree(tmp_path: Path, ucf_clip: Path, capsys) -> None:
    """Split ids 1 train / 2 test / 0 unused (left out, said); subject = the source movie."""
    root = tmp_path / "hmdb51"
    sdir = root / "testTrainMulti_7030_splits"
    sdir.mkdir(parents=True)
    for cls in ("brush_hair", "cartwheel"):
        (root / cls).mkdir()
        lines = []
        for k, (movie, tag) in enumerate((("April_09", 1), ("April_09", 1), ("Blue_Lagoon", 2), ("Xmas", 0))):
            name = f"{movie}_{cls}_u_nm_np1_ba_goo_{k}.avi"
            (root / cls / name).symlink_to(ucf_clip)
            lines.append(f"{name} {tag} ")
        (sdir / f"{cls}_test_split1.txt").write_text("\r\n".join(lines) + "\r\n")
    out = tmp_path / "cache"
    assert main(["prepare", str(root), str(out), "--layout", "hmdb51", "--split", "1", *JOB]) == 0
    assert "2 video(s) marked 0 (unused) are left out" in capsys.readouterr().err
    recs = {r["name"]: r for r in C.read_index(out)}
    assert len(recs) == 6 and C.read_sample_list(out) == sorted(recs)
    r = recs["Blue_Lagoon_cartwheel_u_nm_np1_ba_goo_2"]
    assert (r["split"], r["subject"], r["label"]) == ("test", "Blue_Lagoon", 1)
    assert C.load_config(out).class_names == ["brush_hair", "cartwheel"]


@pytest.mark.parametrize("how", [["--modalities", "rgb,flow"], ["--flow", "dis"]])
def test_rgb_only_manifest_with_flow(tmp_path: Path, how: list[str]) -> None:
    """Real Kinetics clips (H.264 MP4), a manifest without depth: RGB and flow only, the bound recorded."""
    clips = sorted(KINETICS.glob("*.mp4"))
    if len(clips) < 2:
        pytest.skip(f"real Kinetics clips not found in {KINETICS} (set MODISTILL_REAL_FIXTURES)")
    m = tmp_path / "clips.csv"
    m.write_text(
        "sample,rgb,label,subject,view,class_name\n"
        + "".join(f"{c.stem},{c},{k},person{k},0,{c.stem.replace('_', ' ')}\n" for k, c in enumerate(clips))
    )
    out = tmp_path / "cache"
    method = [] if "--flow" in how else ["--flow", "dis"]
    assert main(["prepare", "--manifest", str(m), str(out), *how, *method, "--flow-bound", "10", *JOB]) == 0
    cfg = C.load_config(out)
    assert cfg.modalities == ("rgb", "flow") and cfg.flow_bound == 10.0 and cfg.depth_near_mm is None
    assert cfg.class_names == ["arm wrestling", "cleaning pool"] and flow_settings(out)["bound"] == 10.0
    assert not (out / "depth").exists()
    for c in clips:
        assert C.load_array(out, "flow", c.stem).shape == (4, 16, 16, 2)
    assert {r["split"] for r in C.read_index(out)} == {None}
