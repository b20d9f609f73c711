"""docs/own_data.md runs as written: for each of its three cases, a small dataset with the page's file names is
built from the real recordings (../shared/fixtures/real: Redwood RGB-D frames, a UCF101 clip, Kinetics clips;
read in place through links), the page's config files are written from its ``# <name>`` blocks, and every
``modistill`` line of its bash blocks runs, in order, and must succeed."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shlex
from pathlib import Path

import pytest
from _own_data import REPO, real_or_skip

from modistill.cli import main

DOC = REPO / "docs" / "own_data.md"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def doc_sections() -> dict[int, list[tuple[str, str]]]:
    """Section number (``## 1.`` ...) -> its fenced blocks ``(language, text)`` in order."""
    out: dict[int, list[tuple[str, str]]] = {}
    for part in re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.M)[1:]:
        m = re.match(r"(\d+)\.", part)
        if m:
            out[int(m.group(1))] = _BLOCK.findall(part)
    return out


def _csv_header(blocks: list[tuple[str, str]]) -> list[str]:
    return next(csv.reader(io.StringIO(next(t for lang, t in blocks if lang == "csv"))))


def run_doc_section(n: int, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Write the section's ``# <file>`` blocks into ``cwd`` and run its commands there; returns them."""
    monkeypatch.chdir(cwd)
    ran = []
    for lang, text in doc_sections()[n]:
        first = text.splitlines()[0]
        if lang in ("yaml", "text") and first.startswith("# "):
            body = text if lang == "yaml" else text.split("\n", 1)[1]
            (cwd / first[2:].strip()).write_text(body)
        elif lang == "bash":
            for line in text.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                assert line.startswith("modistill "), f"docs/own_data.md: not a modistill command: {line}"
                assert main(shlex.split(line)[1:]) == 0, f"docs/own_data.md section {n}: failed: {line}"
                ran.append(line)
    assert ran, f"docs/own_data.md section {n} has no commands"
    return ran


def _needs(*options: str, manifest_fields: tuple[str, ...] = ()) -> None:
    """Skip unless `modistill prepare` has ``options`` and manifests accept ``manifest_fields`` (the preparation
    side of issue 10)."""
    from modistill.commands import prepare
    from modistill.data.manifest import MANIFEST_FIELDS

    parser = argparse.ArgumentParser()
    prepare.register(parser)
    helptext = parser.format_help()
    lacking = [o for o in options if o not in helptext] + [f for f in manifest_fields if f not in MANIFEST_FIELDS]
    if lacking:
        pytest.skip(f"docs/own_data.md uses {lacking}, which this checkout's prepare does not have yet")


def _link_frames(dst: Path, src: Path, order: list[int], suffix: str) -> None:
    dst.mkdir(parents=True)
    for j, i in enumerate(order):
        (dst / f"{j:05d}{suffix}").symlink_to(src / f"{i:05d}{suffix}")


# ------------------------------------------------------------------------------------------------ 1. RGB-D
@pytest.mark.slow
def test_doc_rgbd_manifest(tmp_path, monkeypatch, capsys):
    _needs("--alignment", manifest_fields=("class_name",))
    red = real_or_skip("rgbd_redwood")
    header = _csv_header(doc_sections()[1])
    rows = []
    for subject in ("alice", "bob", "carol", "dave", "erin"):
        for k, label, name, order in ((1, 0, "pan right", [0, 1, 2, 3, 4]), (2, 1, "pan left", [4, 3, 2, 1, 0])):
            rec = tmp_path / "recordings" / f"kitchen_{subject}_{k}"
            _link_frames(rec / "color", red / "color", order, ".jpg")
            _link_frames(rec / "depth", red / "depth", order, ".png")
            values = {"sample": rec.name, "rgb": f"recordings/{rec.name}/color",
                      "depth": f"recordings/{rec.name}/depth", "label": label, "class_name": name,
                      "subject": subject, "view": "front"}
            rows.append([values[h] for h in header])
    _write_csv(tmp_path / "manifest.csv", header, rows)
    run_doc_section(1, tmp_path, monkeypatch)
    spec = json.loads((tmp_path / "runs/kitchen/export-step4/deploy.json").read_text())
    assert spec["stage"] == "step4" and spec["class_names"] == ["pan right", "pan left"]
    out = capsys.readouterr().out
    assert "step4 on test" in out and "pan left" in out
    assert "| pan right |" in (tmp_path / "runs/kitchen/report.md").read_text()


# ----------------------------------------------------------------------------------------- 2. RGB only
@pytest.mark.slow
def test_doc_rgb_only_manifest_with_flow(tmp_path, monkeypatch):
    _needs("--classes", manifest_fields=("split",))
    kin = real_or_skip("video_kinetics")
    header = _csv_header(doc_sections()[2])
    (tmp_path / "clips").mkdir()
    rows = []
    for i, (subject, split) in enumerate([("anna", "train"), ("ben", "train"), ("cleo", "train"),
                                          ("emma", "test")], 1):
        for label, (stem, video) in enumerate((("wrestling", "arm_wrestling.mp4"), ("pool", "cleaning_pool.mp4"))):
            name = f"{stem}_{i:02d}"
            (tmp_path / "clips" / f"{name}.mp4").symlink_to(kin / video)
            values = {"sample": name, "rgb": f"clips/{name}.mp4", "label": label, "subject": subject,
                      "view": 1, "split": split}
            rows.append([values[h] for h in header])
    _write_csv(tmp_path / "clips.csv", header, rows)
    run_doc_section(2, tmp_path, monkeypatch)
    preds = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert len(preds) == 8 and all(p["ok"] == "1" and p["top1"] in ("arm wrestling", "cleaning pool")
                                   for p in preds)


# ------------------------------------------------------------------------------------------------ 3. UCF101
@pytest.mark.slow
def test_doc_ucf101(tmp_path, monkeypatch, capsys):
    _needs("--layout", "--split")
    ucf = real_or_skip("video_ucf101", "ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01.avi")
    wrestling = real_or_skip("video_kinetics", "arm_wrestling.mp4")
    root = tmp_path / "UCF101"
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    train, test = [], []
    for cid, (cls, src) in enumerate((("ApplyEyeMakeup", ucf), ("ArmWrestling", wrestling)), 1):
        (root / cls).mkdir()
        for g in range(1, 7):
            rel = f"{cls}/v_{cls}_g{g:02d}_c01.avi"
            (root / rel).symlink_to(src)  # the Kinetics MP4 under a UCF101 name: PyAV reads it by content
            if g <= 2:
                test.append(rel)
            else:
                train.append(f"{rel} {cid}")
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 ArmWrestling\n")
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test) + "\n")
    capsys.readouterr()
    run_doc_section(3, tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert out.count("ApplyEyeMakeup/v_ApplyEyeMakeup_g0") == 6  # one result per video of the class folder
    spec = json.loads((tmp_path / "runs/ucf101/export-motion_final/deploy.json").read_text())
    assert spec["class_names"] == ["ApplyEyeMakeup", "ArmWrestling"]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def test_doc_sections_are_the_three_cases():
    secs = doc_sections()
    assert sorted(secs) == [1, 2, 3]
    for n, blocks in secs.items():
        cmds = [ln for lang, t in blocks if lang == "bash" for ln in t.splitlines() if ln.strip()]
        assert any(c.startswith("modistill prepare") for c in cmds) and any(
            c.startswith("modistill predict") for c in cmds), n
