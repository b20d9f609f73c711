"""Your own data from the command line only: real registered RGB-D frames (Redwood, non-NTU sample names) ->
manifest -> prepare -> train -> eval -> export -> predict -> report; class names from the cache everywhere; the
deployed stage known per recipe (a motion run needs no --stage); predict on many videos, folders, truncated and
broken files (real UCF101 / Kinetics clips, cut copies in the temporary folder)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from _own_data import real_or_skip, redwood_clips

from modistill.cli import main
from modistill.data import cache as C

CLASSES = ["pan forward", "pan backward"]
NTU_LOOKING = "S001C001P001R001A001"  # performer 1 by its name (an NTU cross-subject training performer)
TINY = {"model": {"backbone": "resnet18", "width": 0.0625},
        "train": {"epochs": 1, "batch_size": 4, "progress": False, "tensorboard": False}}


def _config(path: Path, cache: Path, out: Path, **recipe) -> Path:
    data = {"cache": str(cache), "protocol": "subjects", "test_subjects": ["carol"], "val_subjects": ["bob"],
            "frames": 2}
    cfg = {"out_dir": str(out), "data": data, **TINY, **({"recipe": recipe} if recipe else {})}
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _prepare(manifest: Path, cache: Path, *extra: str) -> None:
    args = ["prepare", "--manifest", str(manifest), str(cache), "--alignment", "registered", "--size", "32",
            "--frames", "4", "--workers", "1", "--quiet", *extra]
    assert main(args) == 0
    cfg = C.load_config(cache)  # the class names a manifest gives (a classes file), set here by hand
    cfg.class_names = list(CLASSES)
    cfg.write(cache / C.CONFIG_NAME)


@pytest.fixture(scope="module")
def rgbd(tmp_path_factory) -> dict[str, Path]:
    """The Redwood dataset prepared and trained with the four-step recipe, from the CLI (~15 s)."""
    base = tmp_path_factory.mktemp("own_rgbd")
    manifest = redwood_clips(base / "data", {"alice": "alice", "bob": "bob", "carol": "carol", "dave": "dave"},
                             ntu_named=(NTU_LOOKING, "carol"))
    cache, run = base / "cache", base / "run"
    _prepare(manifest, cache)
    assert main(["train", str(_config(base / "exp.yaml", cache, run))]) == 0
    return {"base": base, "data": base / "data", "cache": cache, "run": run}


@pytest.fixture(scope="module")
def exported(rgbd) -> Path:
    out = rgbd["base"] / "export"
    if not (out / "deploy.json").is_file():
        assert main(["export", str(rgbd["run"]), "--out", str(out)]) == 0  # no --stage needed
    return out


@pytest.mark.slow
def test_rgbd_manifest_end_to_end_from_the_cli(rgbd, exported, capsys):
    run, base = rgbd["run"], rgbd["base"]
    # The split came from the records: the NTU-looking sample of subject carol is a test sample.
    stage = json.loads((run / "results.json").read_text())
    assert "step4" in json.dumps(stage)
    capsys.readouterr()
    assert main(["eval", str(run), "--out", str(base / "eval.json")]) == 0  # default stage: step4
    out = capsys.readouterr().out
    assert out.startswith("step4 on test") and "(rgb (rgb+hall); 3 videos" in out
    assert all(name in out for name in CLASSES)
    ev = json.loads((base / "eval.json").read_text())
    assert ev["stage"] == "step4" and ev["metrics"]["class_names"] == CLASSES

    assert main(["export", str(run), "--out", str(base / "export2")]) == 0  # no --stage needed
    assert f"videos/{NTU_LOOKING}.mp4 (frames" in capsys.readouterr().out  # the check read the source video
    spec = json.loads((exported / "deploy.json").read_text())
    assert spec["stage"] == "step4" and spec["class_names"] == CLASSES and spec["crop"]["method"] == "full"

    videos = rgbd["data"] / "videos"
    assert main(["predict", str(videos), "--model", str(exported), "--top-k", "2",
                 "--out", str(base / "pred.csv")]) == 0
    rows = list(csv.DictReader((base / "pred.csv").open()))
    assert len(rows) == 9 and all(r["ok"] == "1" and r["top1"] in CLASSES for r in rows)
    assert {r["frames"] for r in rows} == {"5"} and all(r["warnings"] == "" for r in rows)
    capsys.readouterr()
    assert main(["predict", str(videos / f"{NTU_LOOKING}.mp4"), "--run", str(run), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["stage"] == "step4" and {t["name"] for t in row["top_k"]} == set(CLASSES)
    assert row["crop"].startswith("full frame")  # a registered cache was not cropped

    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "## Per-class test accuracy" in md and "| pan forward |" in md
    assert main(["robustness", str(run), "--sigma2", "0", "1"]) == 0


@pytest.mark.slow
def test_split_by_records_not_names(rgbd):
    from modistill.data.dataset import CachedClipDataset
    from modistill.data.splits import SplitRule

    rule = SplitRule("subjects", test_subjects=("carol",), val_subjects=("bob",))
    parts = {s: CachedClipDataset(rgbd["cache"], s, rule=rule, modalities=("rgb",)).samples
             for s in ("train", "val", "test")}
    assert parts == {"train": ["alice_back", "alice_fwd", "dave_back", "dave_fwd"],
                     "val": ["bob_back", "bob_fwd"], "test": [NTU_LOOKING, "carol_back", "carol_fwd"]}
    # An NTU protocol on this manifest cache reads the subject field ("carol"), never the name's P001.
    with pytest.raises(ValueError, match="integer performer.*carol|integer performer.*alice"):
        CachedClipDataset(rgbd["cache"], "train", protocol="xsub", modalities=("rgb",))


@pytest.mark.slow
def test_motion_run_exports_and_predicts_without_a_stage(rgbd, capsys):
    base = rgbd["base"]
    cache, run = base / "cache_flow", base / "run_motion"
    _prepare(rgbd["data"] / "manifest.csv", cache, "--flow", "dis")
    exp = _config(base / "motion.yaml", cache, run, name="motion", two_stream=False)
    assert main(["train", str(exp)]) == 0
    assert main(["export", str(run)]) == 0
    spec = json.loads((run / "export-motion_final" / "deploy.json").read_text())
    assert spec["stage"] == "motion_final" and spec["class_names"] == CLASSES
    capsys.readouterr()
    video = rgbd["data"] / "videos" / "dave_back.mp4"
    assert main(["predict", str(video), "--run", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stage"] == "motion_final"
    assert main(["eval", str(run)]) == 0
    assert capsys.readouterr().out.startswith("motion_final on test")
    # The depth-noise study needs the depth teacher: a motion run says so instead of a traceback.
    assert main(["robustness", str(run)]) == 2
    assert "recipe is 'motion'" in capsys.readouterr().err


def test_depth_recipe_on_a_cache_without_depth_names_the_cache(tmp_path):
    from modistill.pipeline.session import check_cache_modalities, load_experiment

    C.CacheConfig(size=16, frames=4, modalities=("rgb", "flow"), source="manifest").write(
        tmp_path / C.CONFIG_NAME)
    exp = load_experiment({"data": {"cache": str(tmp_path)}})
    with pytest.raises(C.CacheError, match=r"cache_config.json: the garcia recipe needs depth.*recipe.name=motion"):
        check_cache_modalities(exp)
    check_cache_modalities(exp, ["step1_rgb"])  # training only the RGB stage is fine
    check_cache_modalities(load_experiment({"data": {"cache": str(tmp_path)}, "recipe": {"name": "motion"}}))


# ------------------------------------------------------------------------------ predict on many videos
@pytest.mark.slow
def test_predict_flags_a_truncated_video_and_goes_on_after_failures(exported, tmp_path, capsys):
    ucf = real_or_skip("video_ucf101", "ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01.avi")
    kinetics = real_or_skip("video_kinetics")
    data = ucf.read_bytes()
    cut = tmp_path / "clips" / "cut_half.avi"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])  # the AVI header still says 164 frames
    (tmp_path / "clips" / "cut_header_only.avi").write_bytes(data[: len(data) // 20])
    (tmp_path / "clips" / "notes.txt").write_text("not a video")
    (tmp_path / "clips" / "nested").mkdir()
    shutil.copy(kinetics / "arm_wrestling.mp4", tmp_path / "clips" / "nested" / "a.mp4")
    (tmp_path / "empty").mkdir()
    model = str(exported)
    capsys.readouterr()
    out = tmp_path / "pred.jsonl"
    code = main(["predict", str(tmp_path / "clips"), str(tmp_path / "empty"), str(tmp_path / "gone.mp4"),
                 "--model", model, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3  # some failed, the others were predicted
    rows = {Path(r["video"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"cut_half.avi", "cut_header_only.avi", "a.mp4", "empty", "gone.mp4"}  # not notes.txt
    half = rows["cut_half.avi"]
    assert half["ok"] and half["frames_declared"] == 164 and half["frames"] < 164
    assert "frames the container declares are present" in half["warnings"][0]
    assert f"warning: {cut}: only {half['frames']} of the 164 frames" in err
    assert not rows["cut_header_only.avi"]["ok"] and "container declares 164" in rows["cut_header_only.avi"]["error"]
    assert rows["a.mp4"]["ok"] and rows["a.mp4"]["frames"] == rows["a.mp4"]["frames_declared"] == 280
    assert "is a directory with no video files" in rows["empty"]["error"]
    assert "no such file" in rows["gone.mp4"]["error"]
    assert "3 of 5 videos failed" in err
    # One bad video alone: nothing predicted, exit status 2, the error names the file.
    assert main(["predict", str(tmp_path / "empty"), "--model", model]) == 2
    assert "empty: is a directory" in capsys.readouterr().err
    assert main(["predict", str(cut), "--model", model, "--out", str(tmp_path / "p.txt")]) == 2
    assert ".jsonl (JSON Lines) or .csv" in capsys.readouterr().err


def test_each_recipe_knows_its_deployed_stage():
    from modistill.pipeline.session import deployed_stage, load_experiment

    want = {"garcia": "step4", "hoffman": "hoffman_eq7", "motion": "motion_final"}
    for name, stage in want.items():
        assert deployed_stage(load_experiment({"recipe": {"name": name}}).recipe) == stage
    motion_mean = load_experiment({"recipe": {"name": "motion", "motion_fusion": "mean", "two_stream": False}})
    assert deployed_stage(motion_mean.recipe) == "motion_final"


def test_crop_groups_of_manifest_views():
    from modistill.deploy import CropSpec

    a, b, c = (0.1, 0.0, 0.9, 1.0), (0.2, 0.0, 0.8, 1.0), (0.0, 0.1, 1.0, 0.9)
    crop = CropSpec(box=(0.0, 0.0, 1.0, 1.0), groups={"None|front": a, "None|side": b, "1|2": c},
                    method="aligned")
    assert crop.select("auto", "clip.mp4", view="front") == (a, "median alignment of setup|camera None|front")
    assert crop.select("auto", "clip.mp4", view="None|side")[0] == b
    assert crop.select("auto", "clip.mp4", view="S001C002")[0] == c
    assert crop.select("auto", "kitchen_S001C002P001R001A001.mp4")[0] == crop.box  # not an NTU file name
    with pytest.raises(ValueError, match=r"view 'top': no such .*None\|front"):
        crop.select("auto", "clip.mp4", view="top")
    two = CropSpec(groups={"1|front": a, "2|front": b}, method="aligned")
    with pytest.raises(ValueError, match="in several setups"):
        two.select("auto", view="front")
