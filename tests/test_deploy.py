"""Deployment: the crop at deployment, deploy.json, preprocessing parity with the prepared cache, ONNX export
and its check, `modistill export` / `modistill predict` (modistill.deploy.spec, deploy_onnx)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from modistill.cli import main
from modistill.data import cache as C
from modistill.data.align import NOMINAL_DEPTH_SIZE, Alignment, aligned_crop_geometry
from modistill.data.sampling import sample_indices
from modistill.data.video import VideoReadError, write_video
from modistill.deploy import (
    CropSpec,
    DeploySpec,
    crop_box_pixels,
    crop_fractions,
    crop_from_cache,
    load_deployed,
    preprocess_frames,
    read_clip,
    top_k,
)
from modistill.deploy.spec import FULL

DEPTH_HW = NOMINAL_DEPTH_SIZE[::-1]
NTU_LIKE = Alignment(scale=2.9, tx=227.0, ty=-58.0)  # about what NTU's skeletons give (REF §4)


# ------------------------------------------------------------------------------------ crop geometry (fast)
def test_crop_box_hand_computed_and_scales_with_video_size():
    # bx = tx + 0.5 - 0.5 s = 226.05, x1 = bx + s * 512 = 1710.85; by = -58.95 < 0, by + s * 424 > 1080.
    box = crop_fractions(NTU_LIKE)
    assert crop_box_pixels(box, (1080, 1920)) == (227, 0, 1710, 1080)
    # Half size: bx = 113.025 -> 114, x1 = 855.425 -> 855.
    assert crop_box_pixels(box, (540, 960)) == (114, 0, 855, 540)
    for a in (NTU_LIKE, Alignment(scale=1.7, tx=700.0, ty=400.0), Alignment(scale=3.4, tx=90.5, ty=-210.25)):
        for hw in [(1080, 1920), (540, 960), (180, 320), (720, 1280), (1080, 1440), (101, 203)]:
            for keep in (False, True):
                want = aligned_crop_geometry(hw, DEPTH_HW, a, keep_aspect=keep).rgb_box
                assert crop_box_pixels(crop_fractions(a), hw, keep) == want, (a, hw, keep)


def test_crop_box_errors_and_full():
    assert crop_box_pixels(FULL, (180, 320)) == (0, 0, 320, 180)
    with pytest.raises(ValueError, match="empty"):
        crop_box_pixels((0.5, 0.5, 0.5001, 0.9), (10, 10))


def _fake_cache(root: Path, alignments: dict[str, tuple[float, float, float]], **extra) -> None:
    cfg = C.CacheConfig(size=16, frames=4, extra={"alignment": "skeleton", "keep_aspect": False, **extra})
    cfg.write(root / C.CONFIG_NAME)
    with C.JsonlAppender(C.index_path(root)) as f:
        for name, (s, tx, ty) in alignments.items():
            cam = int(name[5:8])
            method = "fallback" if name.endswith("A009") else "skeleton"
            f.append(
                {
                    "name": name,
                    "setup": 1,
                    "camera": cam,
                    "frames": 4,
                    "alignment": {"scale": s, "tx": tx, "ty": ty, "method": method},
                }
            )


def test_crop_from_cache_medians_and_groups(tmp_path):
    _fake_cache(
        tmp_path,
        {
            "S001C001P001R001A001": (2.0, 100.0, -50.0),
            "S001C001P001R001A002": (3.0, 300.0, -10.0),
            "S001C001P001R001A003": (2.5, 200.0, -30.0),
            "S001C002P001R001A001": (2.8, 250.0, -40.0),
            "S001C002P001R001A009": (9.0, 999.0, 999.0),  # a fallback record: never part of a median
        },
    )
    crop = crop_from_cache(tmp_path)
    assert crop.method == "aligned"
    # Overall median of the 4 fitted rows: scale 2.65, tx 225, ty -35; camera 1: 2.5, 200, -30.
    assert crop.box == pytest.approx(crop_fractions(Alignment(scale=2.65, tx=225.0, ty=-35.0)))
    assert crop.groups["1|1"] == pytest.approx(crop_fractions(Alignment(scale=2.5, tx=200.0, ty=-30.0)))
    assert crop.groups["1|2"] == pytest.approx(crop_fractions(Alignment(scale=2.8, tx=250.0, ty=-40.0)))
    # auto: the NTU file name picks its camera's crop; an unknown camera or a foreign name gets the median.
    assert crop.select("auto", "x/S001C002P007R002A005_rgb.avi")[0] == crop.groups["1|2"]
    assert crop.select("auto", "x/S003C001P007R002A005_rgb.avi")[0] == crop.box
    assert crop.select("auto", "holiday.mp4")[0] == crop.box
    assert crop.select("auto", "holiday.mp4", view="S001C001")[0] == crop.groups["1|1"]
    assert crop.select("median", "x/S001C002P007R002A005_rgb.avi")[0] == crop.box
    assert crop.select("full")[0] == FULL
    assert crop.select("0.1,0.2,0.9,0.8")[0] == (0.1, 0.2, 0.9, 0.8)
    with pytest.raises(ValueError, match="expected auto, median, full"):
        crop.select("0.9,0.2,0.1,0.8")
    with pytest.raises(ValueError, match="no such"):
        crop.select("auto", view="S005C003")


def test_crop_from_registered_cache_is_full_frame(tmp_path):
    _fake_cache(tmp_path, {"S001C001P001R001A001": (1.0, 0.0, 0.0)}, alignment="registered")
    crop = crop_from_cache(tmp_path)
    assert crop.method == "full" and crop.select("auto")[0] == FULL


# ---------------------------------------------------------------------------------------- spec and maths
def test_deploy_json_round_trip(tmp_path):
    spec = DeploySpec(
        frames=5,
        size=24,
        class_names=["a", "b", "c"],
        crop=CropSpec(box=(0.1, 0.0, 0.9, 1.0), groups={"1|2": (0.2, 0.0, 0.8, 1.0)}, method="aligned"),
        stage="step4",
        streams=("rgb", "hall"),
    )
    spec.save(tmp_path / "deploy.json")
    back = DeploySpec.load(tmp_path / "deploy.json")
    assert back == spec and back.num_classes == 3
    json.loads((tmp_path / "deploy.json").read_text())  # plain JSON for non-Python consumers
    d = spec.to_dict() | {"version": 99}
    with pytest.raises(ValueError, match="newer"):
        DeploySpec.from_dict(d, "x.json")
    with pytest.raises(ValueError, match="malformed"):
        DeploySpec.from_dict(spec.to_dict() | {"bogus": 1}, "x.json")
    with pytest.raises(ValueError, match="malformed"):
        DeploySpec.from_dict(spec.to_dict() | {"crop": [0, 0, 1, 1]}, "x.json")
    with pytest.raises(FileNotFoundError, match="deploy.json"):
        DeploySpec.load(tmp_path / "nope" / "deploy.json")


def test_top_k_hand_computed():
    res = top_k(np.log([1.0, 2.0, 3.0]), ["a", "b", "c"], k=2)
    assert [r["name"] for r in res] == ["c", "b"]
    assert [r["probability"] for r in res] == pytest.approx([0.5, 1 / 3])
    assert sum(r["probability"] for r in top_k(np.zeros(4), list("abcd"), 9)) == pytest.approx(1.0)


def test_preprocess_frames_crop_resize_normalise():
    spec = DeploySpec(frames=2, size=4, class_names=["a"])
    frames = np.zeros((2, 8, 16, 3), np.uint8)
    frames[:, :, 8:] = 255  # right half white
    x = preprocess_frames(frames, spec, (8, 0, 16, 8))  # only the white half
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.float32
    want = (1.0 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    assert torch.allclose(x, want.view(1, 3, 1, 1).expand_as(x))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(frames.astype(np.float32), spec)


def test_unreadable_video_errors_name_the_file(tmp_path):
    spec = DeploySpec(frames=2, size=8, class_names=["a"])
    bad = tmp_path / "broken_clip.avi"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(VideoReadError, match="broken_clip.avi"):
        read_clip(bad, spec)
    with pytest.raises(FileNotFoundError, match="missing_clip.avi"):
        read_clip(tmp_path / "missing_clip.avi", spec)


def test_read_clip_even_frames_and_crop(tmp_path):
    # Frame i is filled with grey level 25 * i: the decoded indices are visible in the pixels.
    frames = np.stack([np.full((32, 48, 3), 25 * i, np.uint8) for i in range(10)])
    write_video(tmp_path / "v.avi", frames)
    spec = DeploySpec(
        frames=3, size=8, class_names=["a"], crop=CropSpec(box=(0.25, 0.0, 0.75, 1.0), method="aligned")
    )
    clip, info = read_clip(tmp_path / "v.avi", spec)
    assert info["indices"] == [1, 5, 8] == sample_indices(10, 3).tolist()
    assert info["crop_px"] == [12, 0, 36, 32] and info["size"] == [48, 32]
    grey = clip[:, 0].mean(dim=(1, 2)) * spec.std[0] + spec.mean[0]
    assert (grey * 255).tolist() == pytest.approx([25, 125, 200], abs=8)  # lossy yuv420p round trip


# ------------------------------------------------------------------------------- one tiny trained run (slow)
@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict[str, Path]:
    """A synthetic dataset, its cache and a 1-epoch run of the four-step recipe (~20 s CPU), built once."""
    from modistill.data.prepare import PrepareOptions, prepare_cache
    from modistill.data.synth import generate_dataset
    from modistill.pipeline.runner import run_recipe
    from modistill.pipeline.session import cache_datasets, load_experiment

    base = tmp_path_factory.mktemp("deploy")
    root, cache = base / "synth", base / "cache"
    generate_dataset(root, preset="tiny", seed=0, workers=1, subjects=[1, 2, 3])
    prepare_cache(cache, root, options=PrepareOptions(size=32, frames=8))
    exp = load_experiment(
        {
            "out_dir": str(base / "run"),
            "data": {"cache": str(cache), "frames": 3},
            "model": {"backbone": "resnet18", "width": 0.125},
            "train": {"epochs": 1, "batch_size": 4, "progress": False, "tensorboard": False},
        }
    )
    factory, num_classes, names = cache_datasets(exp)
    run_recipe(exp, factory, num_classes, class_names=names)
    return {"root": root, "cache": cache, "run": base / "run", "base": base}


@pytest.fixture(scope="session")
def exported(tiny_run) -> Path:
    out = tiny_run["base"] / "export"
    assert main(["export", str(tiny_run["run"]), "--onnx", "--out", str(out)]) == 0
    return out


def _video(tiny_run, name: str) -> Path:
    return tiny_run["root"] / "nturgb+d_rgb" / f"{name}_rgb.avi"


@pytest.mark.slow
def test_preprocessing_matches_the_prepared_cache(tiny_run):
    """With the sample's own alignment and the cache's frames, deployment preprocessing of the raw video gives
    exactly the evaluation item of the cached dataset (same crop, resize and normalisation)."""
    from modistill.data.dataset import CachedClipDataset

    d = load_deployed(tiny_run["run"])
    assert (d.streams, d.inputs, d.frames, d.size) == (("rgb", "hall"), ("rgb",), 3, 32)
    recs = {r["name"]: r for r in C.read_index(tiny_run["cache"])}
    ds = CachedClipDataset(tiny_run["cache"], split="test", frames=3, train=False, modalities=("rgb",))
    for i in (0, len(ds) - 1):
        item = ds[i]
        r = recs[item["sample"]]
        idx = np.asarray(r["source_frames"])[sample_indices(r["frames"], 3, "even")]
        box = crop_fractions(Alignment.from_dict(r["alignment"]))
        clip, _ = read_clip(_video(tiny_run, item["sample"]), d.spec, indices=idx, box=box)
        assert torch.equal(clip, item["rgb"])


@pytest.mark.slow
def test_export_matches_pytorch_and_deploy_json(tiny_run, exported, capsys, monkeypatch):
    from modistill.deploy import onnx as deploy_onnx

    assert (exported / "model.onnx").is_file()
    d = load_deployed(tiny_run["run"], dtype="fp32")
    assert DeploySpec.load(exported / "deploy.json") == d.spec  # round trip of what predict needs
    # The default export dtype (auto) is float32, the fastest onnxruntime runs on CPU, whatever the CPU.
    session = deploy_onnx.OnnxPredictor(exported).session
    assert session.get_inputs()[0].type == session.get_outputs()[0].type == "tensor(float)"
    gen = torch.Generator().manual_seed(1)
    rows = deploy_onnx.check_onnx(
        d,
        exported / "model.onnx",
        {
            "b1": torch.randn(1, 3, 3, 32, 32, generator=gen),
            "b4": torch.randn(4, 3, 3, 32, 32, generator=gen),
        },
    )  # dynamic batch
    assert all(r["ok"] and r["max_abs_diff"] < 1e-4 for r in rows), rows
    # A mismatching runtime must fail the export's check with a non-zero exit status.
    real = deploy_onnx.OnnxPredictor.logits
    monkeypatch.setattr(deploy_onnx.OnnxPredictor, "logits", lambda self, x: real(self, x) + 0.01)
    capsys.readouterr()
    assert main(["export", str(tiny_run["run"]), "--out", str(tiny_run["base"] / "bad")]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.slow
def test_predict_equals_softmax_of_the_pytorch_model_and_onnx_agrees(tiny_run, exported, capsys):
    video = _video(tiny_run, "S001C002P003R001A002")
    d = load_deployed(tiny_run["run"], dtype="fp32")
    clip, info = read_clip(video, d.spec)
    assert info["crop"].endswith("1|2")  # the camera's own median crop, from the NTU file name
    with torch.no_grad():
        p = torch.softmax(d.module(clip[None]), dim=1)[0]
    results = {}
    for src in (["--run", str(tiny_run["run"]), "--dtype", "fp32"], ["--model", str(exported / "model.onnx")]):
        capsys.readouterr()
        assert main(["predict", str(video), *src, "--top-k", "2", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        results[src[0]] = out
        assert len(out["top_k"]) == 2 and sum(r["probability"] for r in out["top_k"]) <= 1 + 1e-9
        for r in out["top_k"]:
            assert r["probability"] == pytest.approx(float(p[r["label"]]), abs=1e-5)
            assert r["name"] == d.class_names[r["label"]]
    assert [r["label"] for r in results["--run"]["top_k"]] == [int(i) for i in p.argsort(descending=True)[:2]]
    assert results["--model"]["backend"] == "onnxruntime" and results["--run"]["crop_px"] == info["crop_px"]
    assert results["--model"]["dtype"] == results["--run"]["dtype"] == "fp32"


@pytest.mark.slow
def test_predict_dtype_option(tiny_run, exported, capsys, monkeypatch):
    """--dtype auto follows the CPU's bf16 support (mocked both ways), bf16 stays close to fp32, and an ONNX
    export refuses bf16 (onnxruntime's CPU provider has no bf16 convolution)."""
    from modistill.deploy import precision

    video = str(_video(tiny_run, "S001C002P003R001A002"))
    run = ["--run", str(tiny_run["run"]), "--json", "--top-k", "99"]

    def predict(*extra: str) -> dict:
        capsys.readouterr()
        assert main(["predict", video, *run, *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        return {"dtype": out["dtype"], "p": {r["label"]: r["probability"] for r in out["top_k"]}}

    fp32, bf16 = predict("--dtype", "fp32"), predict("--dtype", "bf16")
    assert (fp32["dtype"], bf16["dtype"]) == ("fp32", "bf16")
    assert fp32["p"].keys() == bf16["p"].keys()
    assert max(abs(fp32["p"][k] - bf16["p"][k]) for k in fp32["p"]) < 0.02
    assert fp32["p"] != bf16["p"]  # it really ran in another dtype
    for flags, want in ((frozenset({"avx512f", "amx_bf16"}), bf16), (frozenset({"avx2"}), fp32)):
        monkeypatch.setattr(precision, "cpu_flags", lambda f=flags: f)
        assert predict() == want  # the default is auto
    capsys.readouterr()
    assert main(["predict", video, "--model", str(exported), "--dtype", "bf16"]) == 2
    assert "onnxruntime" in capsys.readouterr().err
    assert main(["predict", video, *run, "--dtype", "fp8"]) == 2
    assert "auto, fp32, bf16" in capsys.readouterr().err
    assert main(["export", str(tiny_run["run"]), "--dtype", "bf16", "--out", str(tiny_run["base"] / "b")]) == 2
    assert "onnxruntime" in capsys.readouterr().err and not (tiny_run["base"] / "b").exists()


@pytest.mark.slow
def test_cli_errors(tiny_run, exported, capsys, tmp_path):
    bad = tmp_path / "garbage_video.avi"
    bad.write_bytes(b"\x00" * 100)
    capsys.readouterr()
    assert main(["predict", str(bad), "--model", str(exported)]) == 2
    assert "garbage_video.avi" in capsys.readouterr().err
    assert main(["predict", str(bad), "--run", str(tiny_run["run"]), "--stage", "step9"]) == 2
    assert "step9" in capsys.readouterr().err
    assert main(["predict", str(bad), "--run", str(tiny_run["run"]), "--cache", str(tmp_path / "gone")]) == 2
    assert "gone" in capsys.readouterr().err
    assert main(["predict", str(bad), "--model", str(tmp_path / "no_export")]) == 2
    assert "no_export" in capsys.readouterr().err
    assert main(["export", str(tiny_run["run"]), "--stage", "step1_depth", "--out", str(tmp_path / "x")]) == 2
    assert "RGB only" in capsys.readouterr().err  # a stage that needs depth is not deployable
    with pytest.raises(SystemExit):
        main(["predict", str(bad)])  # neither --run nor --model


@pytest.mark.slow
def test_predict_real_ntu_video(ntu_fixtures, exported, capsys):
    video = ntu_fixtures / "S001C001P001R001A001_rgb.avi"
    spec = DeploySpec.load(exported / "deploy.json")
    assert main(["predict", str(video), "--model", str(exported), "--json", "--top-k", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == [1920, 1080] and out["frames"] == 103
    assert out["indices"] == sample_indices(103, spec.frames).tolist()  # only K frames are kept
    x0, y0, x1, y1 = out["crop_px"]
    assert 0 <= x0 < x1 <= 1920 and 0 <= y0 < y1 <= 1080
    # The crop fractions learned on the 320x180 synthetic videos scale to the full-HD frame.
    assert out["crop_px"] == list(crop_box_pixels(spec.crop.groups["1|1"], (1080, 1920)))
    assert len(out["top_k"]) == 3 and math.isclose(sum(r["probability"] for r in out["top_k"]), 1.0)


def test_run_trained_under_other_stage_keys_still_opens(tiny_run, tmp_path):
    """A run trained before a change to how stage keys are computed: its stage folders carry the old keys.
    `open_run` (eval, export, predict) finds them through results.json; before, it said "no result"."""
    import json
    import shutil

    from modistill.pipeline.session import RunError, open_run

    run = shutil.copytree(tiny_run["run"], tmp_path / "run")
    planned = open_run(run).stage("step4").dir
    old = planned.with_name("step4-0123456789ab")  # the folder name an older key scheme gave it
    planned.rename(old)
    results = json.loads((run / "results.json").read_text())
    results["stages"]["step4"]["dir"] = f"somewhere/else/stages/{old.name}"  # recorded from another cwd
    (run / "results.json").write_text(json.dumps(results))
    handle = open_run(run)
    assert handle.stage("step4").dir == old
    assert handle.stage("step4").result["test"]["accuracy"] >= 0
    # a folder whose stage definition differs from the planned one is not taken for it
    spec = json.loads((old / "stage.json").read_text())
    spec["stage"]["fusion"] = "max"
    (old / "stage.json").write_text(json.dumps(spec))
    with pytest.raises(RunError, match="stage 'step4' has no result"):
        open_run(run).stage("step4")


def test_deploy_dtype_accuracy_benchmark_runs(tiny_run):
    """benchmarks/deploy_dtype_accuracy.py on a trained run: its fp32 test accuracy equals the recorded one
    (it broke unnoticed when the cache began to hand out uint8 frames normalised on the device)."""
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "deploy_dtype_accuracy.py"
    spec = importlib.util.spec_from_file_location("deploy_dtype_accuracy", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = mod.compare_stage(tiny_run["run"], "step4")
    assert row["test"]["n"] > 0 and 0 <= row["test"]["top1_agreement"] <= 1
    assert row["fp32_reproduces_recorded"]
