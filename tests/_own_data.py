"""Helpers for the "your own data" tests: where the real recordings are, and a small registered RGB-D dataset
built from them (tests/test_own_data_cli.py, tests/test_own_data_docs.py).

The real files (../shared/fixtures/real, README there) are read in place; only derived files (videos encoded
from the frames, links to the depth PNGs) are written, under the test's temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def real_fixture_dir() -> Path:
    """The real (non-NTU) recordings (MODISTILL_REAL_FIXTURES overrides)."""
    return Path(os.environ.get("MODISTILL_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))


def real_or_skip(*parts: str) -> Path:
    """``real_fixture_dir() / parts``, or skip the test saying what is missing and how to point at it."""
    p = real_fixture_dir().joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real recording {p} not found (set MODISTILL_REAL_FIXTURES to the fixtures/real folder)")
    return p


def redwood_clips(out: Path, subjects: dict[str, str], ntu_named: tuple[str, str] | None = None) -> Path:
    """A registered RGB-D dataset from the 5 real Redwood frames: per subject two clips, the frames forward
    (label 0) and backward (label 1); RGB as an MPEG-4 video, depth as links named ``MDepth-%08d.png`` to the
    real 16-bit PNGs (mm). ``subjects``: sample-name stem -> subject id (samples ``<stem>_fwd``,
    ``<stem>_back``); ``ntu_named``: (an NTU-style sample name, its subject) for one more forward clip.
    Returns the manifest (CSV)."""
    import cv2
    import numpy as np

    from modistill.data.video import write_video

    red = real_or_skip("rgbd_redwood")
    color = [cv2.cvtColor(cv2.imread(str(red / "color" / f"{i:05d}.jpg")), cv2.COLOR_BGR2RGB) for i in range(5)]
    rows = ["sample,rgb,depth,label,subject,view"]
    clips = [(f"{stem}_{tag}", subject, label) for stem, subject in subjects.items()
             for tag, label in (("fwd", 0), ("back", 1))]
    if ntu_named is not None:
        clips.append((ntu_named[0], ntu_named[1], 0))
    for name, subject, label in clips:
        order = [0, 1, 2, 3, 4] if label == 0 else [4, 3, 2, 1, 0]
        write_video(out / "videos" / f"{name}.mp4", np.stack([color[i] for i in order]))
        d = out / "depth" / name
        d.mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(order):
            (d / f"MDepth-{j + 1:08d}.png").symlink_to(red / "depth" / f"{i:05d}.png")
        rows.append(f"{name},videos/{name}.mp4,depth/{name},{label},{subject},kitchen")
    manifest = out / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest
