"""The synthetic NTU-format generator end to end: layout, formats, truth consistency, determinism, resume."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from modistill.data.ntu import XSUB_TRAIN_SUBJECTS, XVIEW_TRAIN_CAMERAS, parse_sample_name
from modistill.data.skeleton import read_skeleton
from modistill.data.synth import generate_dataset, make_config, sample_names, sample_paths
from modistill.data.video import read_video_frames, video_frame_count

# Small and short: 3 classes x subjects {1, 3} x cameras {1, 2} = 12 samples of 12-14 frames.
KW = {"rgb_size": (160, 90), "depth_size": (64, 53), "frames": (12, 14)}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("synth") / "tiny"
    names = generate_dataset(root, "tiny", seed=0, workers=1, **KW)
    return root, names


def _truth(root: Path, name: str) -> dict:
    return json.loads((root / "synth_truth" / f"{name}.json").read_text())


def test_layout_names_and_protocols(tiny):
    root, names = tiny
    assert names == sample_names(make_config("tiny", **KW)) and len(names) == 12
    parsed = [parse_sample_name(n) for n in names]
    assert {p.action for p in parsed} == {1, 2, 3}
    subjects, cams = {p.subject for p in parsed}, {p.camera for p in parsed}
    assert subjects & XSUB_TRAIN_SUBJECTS and subjects - XSUB_TRAIN_SUBJECTS  # both xsub splits present
    assert cams & XVIEW_TRAIN_CAMERAS and cams - XVIEW_TRAIN_CAMERAS  # both xview splits present
    for n in names:
        paths = sample_paths(root, n)
        assert paths["rgb"] == root / "nturgb+d_rgb" / f"{n}_rgb.avi" and paths["rgb"].is_file()
        assert (paths["depth"] / "MDepth-00000001.png").is_file()
        assert paths["skeleton"].is_file() and paths["truth"].is_file()
    classes = json.loads((root / "classes.json").read_text())
    assert [classes[str(i)]["name"] for i in (1, 2, 3)] == ["push_forward", "hands_to_chest", "wave"]
    assert [classes[str(i)]["label"] for i in (1, 2, 3)] == [0, 1, 2]
    cfg = json.loads((root / "synth_config.json").read_text())
    assert cfg["seed"] == 0 and cfg["rgb_size"] == [160, 90] and cfg["classes"] == classes_names(classes)
    assert not list(root.rglob("*.tmp-*"))


def classes_names(classes: dict) -> list[str]:
    return [classes[k]["name"] for k in sorted(classes, key=int)]


def test_rgb_video_and_depth_pngs(tiny):
    import cv2

    root, names = tiny
    for n in names[:4]:
        t = _truth(root, n)
        F = t["num_frames"]
        assert 12 <= F <= 14
        rgb_path = sample_paths(root, n)["rgb"]
        assert video_frame_count(rgb_path) == F
        frames = read_video_frames(rgb_path)
        assert frames.shape == (F, 90, 160, 3)
        assert frames.std() > 10  # textured, not blank
        pngs = sorted(sample_paths(root, n)["depth"].iterdir())
        assert [p.name for p in pngs] == [f"MDepth-{i:08d}.png" for i in range(1, F + 1)]
        d = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in pngs])
        assert d.dtype == np.uint16 and d.shape == (F, 53, 64)
        fg = d[d > 0]
        assert 0.02 < fg.size / d.size < 0.5  # masked: the body only, background 0
        assert d[:, 0, :].max() == 0 and d[:, :, 0].max() == 0  # borders are background
        z = np.asarray(t["joints_xyz"])[..., 2] * 1000
        assert z.min() - 400 < fg.min() and fg.max() < z.max() + 400  # body surface around the joints


def test_skeleton_parses_and_matches_truth(tiny):
    root, names = tiny
    for n in names:
        t = _truth(root, n)
        sk = read_skeleton(sample_paths(root, n)["skeleton"])
        F = t["num_frames"]
        assert sk.num_frames == F and sk.num_bodies == 1 and (sk.bodies_per_frame == 1).all()
        assert int(sk.body_ids[0]) == t["skeleton"]["body_id"]
        tr = sk.tracking[:, 0]
        assert set(np.unique(tr)) <= {0, 1, 2} and (tr == 2).mean() > 0.8
        xyz, true = sk.joints_xyz[:, 0].astype(float), np.asarray(t["joints_xyz"])
        err = np.linalg.norm(xyz - true, axis=-1)
        assert np.median(err) < 0.012 and err[tr == 2].max() < 0.08  # Kinect-like jitter only
        # depthX/Y and colorX/Y are the projections of x, y, z through the sidecar's cameras.
        di, ci = t["depth_intrinsics"], t["color_intrinsics"]
        tc = np.asarray(t["depth_to_color"]["translation"])
        pd = np.stack(
            [
                di["cx"] + di["fx"] * xyz[..., 0] / xyz[..., 2],
                di["cy"] - di["fy"] * xyz[..., 1] / xyz[..., 2],
            ],
            -1,
        )
        c3 = xyz + tc
        pc = np.stack(
            [ci["cx"] + ci["fx"] * c3[..., 0] / c3[..., 2], ci["cy"] - ci["fy"] * c3[..., 1] / c3[..., 2]], -1
        )
        np.testing.assert_allclose(sk.depth_xy[:, 0], pd, atol=0.01)
        np.testing.assert_allclose(sk.color_xy[:, 0], pc, atol=0.02)
        q = sk.orientation[:, 0]
        norms = np.linalg.norm(q, axis=-1)
        assert np.allclose(norms[:, [3, 15, 19, 21, 22, 23, 24]], 0) and np.allclose(
            norms[:, :3], 1, atol=1e-5
        )


def test_joint_pixels_agree_with_truth_and_renders(tiny):
    """Skeleton pixels within ~1 px of the truth at the decoded sizes; joints land on the rendered body."""
    import cv2

    root, names = tiny
    for n in names[:6]:
        t = _truth(root, n)
        sk = read_skeleton(sample_paths(root, n)["skeleton"])
        good = sk.tracking[:, 0] == 2
        sc, sd = np.array([160 / 1920, 90 / 1080]), np.array([64 / 512, 53 / 424])
        ec = np.linalg.norm((sk.color_xy[:, 0] - np.asarray(t["joints_color_px"])) * sc, axis=-1)[good]
        ed = np.linalg.norm((sk.depth_xy[:, 0] - np.asarray(t["joints_depth_px"])) * sd, axis=-1)[good]
        assert np.median(ec) < 0.3 and np.quantile(ec, 0.95) < 1.0, n
        assert np.median(ed) < 0.3 and np.quantile(ed, 0.95) < 1.0, n
        # The sidecar's similarity maps the true depth pixels onto the true colour pixels (parallax < 3 px).
        a = t["alignment"]
        mapped = a["scale"] * np.asarray(t["joints_depth_px"]) + [a["tx"], a["ty"]]
        assert np.median(np.linalg.norm(mapped - np.asarray(t["joints_color_px"]), axis=-1)) < 3.0
        assert 2.85 < a["scale"] < 2.95  # the fixtures' measured range (fixtures README)
        # Trunk joints (spine, neck, head) fall on foreground depth pixels, a few cm behind the surface.
        F = t["num_frames"]
        for f in (0, F // 2):
            d = cv2.imread(
                str(sample_paths(root, n)["depth"] / f"MDepth-{f + 1:08d}.png"), cv2.IMREAD_UNCHANGED
            )
            for j in (0, 1, 2, 20):
                u, v = np.rint(np.asarray(t["joints_depth_px"][f][j]) * sd).astype(int)
                patch = d[max(v - 1, 0) : v + 2, max(u - 1, 0) : u + 2]
                surf = patch[patch > 0]
                assert surf.size, f"{n} frame {f} joint {j} not on the body"
                gap = t["joints_xyz"][f][j][2] * 1000 - np.median(surf)
                assert 0 < gap < 250, f"{n} joint {j}: surface {gap:.0f} mm in front of the joint"
            x0, y0, x1, y1 = t["body_bbox_color_px"][f]
            for j in (0, 1, 2, 3, 20):
                u, v = t["joints_color_px"][f][j]
                assert x0 <= u <= x1 and y0 <= v <= y1


def test_parallel_equals_serial_and_seed_changes_output(tiny, tmp_path):
    root, names = tiny
    par = tmp_path / "par"
    assert generate_dataset(par, "tiny", seed=0, workers=2, **KW) == names
    a, b = _files(root), _files(par)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []  # skeletons, depth PNGs, videos, truth: byte-identical
    other = tmp_path / "seed1"
    generate_dataset(other, "tiny", seed=1, subjects=[1], cameras=[1], **KW)
    n = names[0]
    for kind in ("skeleton", "truth"):
        assert sample_paths(other, n)[kind].read_bytes() != sample_paths(root, n)[kind].read_bytes()
    png = "MDepth-00000001.png"
    assert (sample_paths(other, n)["depth"] / png).read_bytes() != (
        sample_paths(root, n)["depth"] / png
    ).read_bytes()


def test_resume_regenerates_only_incomplete_samples(tiny, tmp_path):
    root, names = tiny
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    victim, other = names[3], names[5]
    want = sample_paths(root, victim)["skeleton"].read_bytes()
    sample_paths(copy, victim)["skeleton"].unlink()  # as if killed before the skeleton was renamed in
    stale = copy / "nturgb+d_rgb" / f"{victim}_rgb.avi.tmp-999999"
    stale.write_bytes(b"partial")
    mtimes = {n: os.stat(sample_paths(copy, n)["truth"]).st_mtime_ns for n in names}
    generate_dataset(copy, "tiny", seed=0, **KW)
    assert sample_paths(copy, victim)["skeleton"].read_bytes() == want
    assert not stale.exists()
    assert os.stat(sample_paths(copy, other)["truth"]).st_mtime_ns == mtimes[other]  # untouched
    assert all(os.stat(sample_paths(copy, n)["truth"]).st_mtime_ns == mtimes[n] for n in names if n != victim)


def test_refuses_to_mix_datasets_and_bad_options(tiny, tmp_path):
    root, _ = tiny
    with pytest.raises(ValueError, match=r"synth_config\.json.*seed"):
        generate_dataset(root, "tiny", seed=5, **KW)
    with pytest.raises(ValueError, match="unknown synth option"):
        make_config("tiny", colour="red")
    with pytest.raises(ValueError, match="even"):
        make_config("tiny", rgb_size=(161, 90))
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge")
    with pytest.raises(ValueError, match="cameras"):
        make_config("tiny", cameras=[4])


def test_missing_and_noise_bodies(tmp_path):
    root = tmp_path / "mb"
    names = generate_dataset(
        root,
        "tiny",
        classes=["wave"],
        subjects=[1],
        cameras=[1, 2, 3],
        replications=2,
        missing_skeleton_rate=0.5,
        noise_body_rate=0.5,
        **KW,
    )
    kinds = []
    for n in names:
        t = _truth(root, n)
        sk = read_skeleton(sample_paths(root, n)["skeleton"])
        assert sk.num_frames == t["num_frames"]
        if t["skeleton"]["missing"]:
            assert sk.num_bodies == 0 and (sk.bodies_per_frame == 0).all()
            kinds.append("missing")
        elif t["skeleton"]["noise_body"]:
            assert sk.num_bodies == 2 and 0 < (sk.bodies_per_frame == 2).sum() < sk.num_frames
            kinds.append("noise")
    assert "missing" in kinds and "noise" in kinds


def _cli(argv: list[str]) -> int:
    # The command's own parser (not modistill.cli.main, which imports every other command too).
    import argparse

    from modistill.commands import synth as cmd

    parser = argparse.ArgumentParser(prog="modistill synth")
    cmd.register(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli(tmp_path, capsys):
    from modistill.cli import COMMANDS

    assert "synth" in dict(COMMANDS)
    assert _cli(["--list-classes"]) == 0
    from modistill.data.synth.actions import ACTIONS

    assert len(capsys.readouterr().out.strip().splitlines()) == len(ACTIONS)
    out = tmp_path / "cli"
    argv = [str(out), "--preset", "tiny", "--classes", "wave,clap", "--subjects", "1", "--cameras", "1"]
    argv += ["--rgb-size", "96x54", "--depth-size", "64x53", "--frames", "8-8", "--no-progress"]
    assert _cli(argv) == 0
    assert sorted(p.name for p in (out / "nturgb+d_skeletons").iterdir()) == [
        "S001C001P001R001A001.skeleton",
        "S001C001P001R001A002.skeleton",
    ]
    assert json.loads((out / "classes.json").read_text())["2"]["name"] == "clap"
    assert _cli([str(out), "--preset", "tiny", "--seed", "3", "--no-progress"]) == 2
    assert "synth_config.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli([str(out), "--rgb-size", "big"])
