"""The example commands of docs/prepare.md run as written, on inputs made from the real recordings."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_prepare_layouts import KINETICS, UCF_CLIP, make_ucf101_tree
from test_prepare_own_data import REDWOOD

from modistill.cli import main
from modistill.data import cache as C
from modistill.data.depth import write_depth_video

DOC = Path(__file__).resolve().parent.parent / "docs" / "prepare.md"


def _doc_parts() -> tuple[list[list[str]], str]:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- prepare-examples:begin -->")[1].split("<!-- prepare-examples:end -->")[0]
    commands = [shlex.split(line[2:]) for line in block.splitlines() if line.startswith("$ modistill ")]
    csv = text.split("<!-- prepare-examples:redwood-manifest -->")[1]
    csv = textwrap.dedent(re.search(r"```csv\n(.*?)```", csv, re.S).group(1))  # type: ignore[union-attr]
    return commands, csv


def _rgbd_folder(folder: Path, depth: np.ndarray, csv: str) -> None:
    folder.mkdir()
    (folder / "color").symlink_to(REDWOOD / "color")
    (folder / "depth").mkdir()
    for i, d in enumerate(depth):
        cv2.imwrite(str(folder / "depth" / f"{i:05d}.png"), d)
    write_depth_video(folder / "depth_video.mkv", depth)
    (folder / "manifest.csv").write_text(csv)


def test_docs_prepare_examples_run_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    clips = sorted(KINETICS.glob("*.mp4"))
    if not ((REDWOOD / "depth").is_dir() and UCF_CLIP.is_file() and len(clips) == 2):
        pytest.skip("the real recordings of ../shared/fixtures/real are not there (MODISTILL_REAL_FIXTURES)")
    commands, csv = _doc_parts()
    assert [c[:2] for c in commands] == [["modistill", "prepare"]] * 4
    depth = np.stack(
        [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((REDWOOD / "depth").glob("*.png"))]
    )
    _rgbd_folder(tmp_path / "redwood", depth, csv)
    _rgbd_folder(tmp_path / "tum", depth * np.uint16(5), csv)  # TUM's 5000 units per metre
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "manifest.csv").write_text(
        "sample,rgb,label,subject,view\n" + "".join(f"{c.stem},{c},{k},p{k},0\n" for k, c in enumerate(clips))
    )
    (tmp_path / "clips" / "classes.txt").write_text("arm wrestling\ncleaning pool\n")
    make_ucf101_tree(tmp_path / "UCF-101", UCF_CLIP)
    monkeypatch.chdir(tmp_path)
    for cmd in commands:
        assert main(cmd[1:]) == 0, cmd
    capsys.readouterr()
    red = C.load_config(tmp_path / "cache" / "redwood")
    assert red.class_names == ["sit", "stand"] and red.modalities == ("rgb", "depth")
    np.testing.assert_array_equal(
        C.load_array(tmp_path / "cache" / "tum", "depth", "living_room_a"),
        C.load_array(tmp_path / "cache" / "redwood", "depth", "living_room_b"),
    )
    assert C.load_config(tmp_path / "cache" / "clips").class_names == ["arm wrestling", "cleaning pool"]
    ucf = C.load_config(tmp_path / "cache" / "ucf101-split1")
    assert ucf.modalities == ("rgb", "flow") and ucf.source == "ucf101"
