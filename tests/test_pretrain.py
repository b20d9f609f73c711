"""The stand-in for ImageNet init (docs/pretrain.md): the pretext frames keep apart from the benchmark, the
`modistill pretrain` checkpoint loads through `model.pretrained` like an ImageNet one, pretraining learns, and
it is cached and resumable."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modistill.cli import main as cli_main
from modistill.data.synth import ACTIONS, actions, pretext
from modistill.data.synth.pretext import (
    PART_NAMES,
    PRETEXT_SETUP0,
    PRETEXT_SUBJECT0,
    PretextConfig,
    num_groups,
    render_group,
)
from modistill.data.synth.pretext_store import load_pretext, pretext_dir, write_pretext
from modistill.models import create_model, load_pretrained
from modistill.pipeline.pretrain import CHECKPOINT, PretrainConfig, pretrain, pretrain_dir

DOCS = Path(__file__).resolve().parents[1] / "docs"
# Tiny: 96 frames at 32 px, a 1/8-width trunk, 2 epochs (about 10 s on one core).
TINY_PT = PretextConfig(frames=96, size=32, label_size=16, poses_per_view=8, performers=16, rooms=4)
TINY = PretrainConfig(modality="rgb", width=0.125, epochs=2, batch_size=16, lr=3e-3, pretext=TINY_PT)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("pretrain")
    return out, pretrain(out, TINY, progress=False)


def test_pretext_never_uses_benchmark_classes_performers_or_rooms(monkeypatch):
    """No action code runs, and every performer / room id lies outside the ids NTU names can carry."""

    def forbidden(*a, **k):
        raise AssertionError("the pretext must not use a benchmark action")

    monkeypatch.setattr(actions, "make_track", forbidden)
    saved = [a.fn for a in ACTIONS]
    for a in ACTIONS:  # frozen dataclasses: patched around their guard, restored below
        object.__setattr__(a, "fn", forbidden)
    subjects, setups = [], []
    real_perf, real_setup = pretext.make_performer, pretext.make_setup
    monkeypatch.setattr(pretext, "make_performer", lambda seed, s: subjects.append(s) or real_perf(seed, s))
    monkeypatch.setattr(pretext, "make_setup", lambda seed, s: setups.append(s) or real_setup(seed, s))
    pretext._performer.cache_clear()
    pretext._setup.cache_clear()
    cfg = dataclasses.replace(TINY_PT, seed=7, frames=24)
    try:
        frames = [render_group(cfg, g) for g in range(num_groups(cfg))]
    finally:
        for a, fn in zip(ACTIONS, saved):
            object.__setattr__(a, "fn", fn)
    assert subjects and setups
    assert min(subjects) >= PRETEXT_SUBJECT0 > 999 and min(setups) >= PRETEXT_SETUP0 > 999
    # What the frames carry: images, part maps and joints; no action label of any kind.
    assert set(frames[0].arrays()) == {"rgb", "depth", "rgb_parts", "depth_parts", "rgb_joints", "depth_joints"}
    pretext._performer.cache_clear()
    pretext._setup.cache_clear()


def test_pretext_frames_are_labelled_consistently():
    f = render_group(TINY_PT, 0)
    n = TINY_PT.poses_per_view
    assert f.rgb.shape == (n, 32, 32, 3) and f.depth.shape == (n, 32, 32, 3) and f.rgb.dtype == np.uint8
    assert f.rgb_parts.shape == (n, 16, 16) and f.rgb_parts.max() < len(PART_NAMES)
    # Body pixels: the depth labels mark exactly where the (jet-encoded, masked) depth is not black.
    big = render_group(dataclasses.replace(TINY_PT, size=64, label_size=64), 0)
    body = big.depth.any(-1)
    assert np.array_equal(body, big.depth_parts > 0)
    assert 0.01 < (big.rgb_parts > 0).mean() < 0.5  # a person, not the whole frame
    assert render_group(TINY_PT, 0).rgb.tobytes() == f.rgb.tobytes()  # deterministic


def test_pretrain_writes_a_torchvision_checkpoint_that_loads_and_changes_the_init(trained, tmp_path):
    out, res = trained
    assert res.checkpoint == pretrain_dir(out, TINY) / CHECKPOINT and res.checkpoint.is_file()
    sd = load_file(str(res.checkpoint))
    ref = create_model("resnet18", num_classes=25 * 64, width=0.125).state_dict()
    assert set(sd) == set(ref)  # torchvision's key names (conv1.weight, layer1.0.bn1.running_mean, ..., fc.*)
    assert all(sd[k].shape == ref[k].shape for k in ref)
    # Through the same path a user's ImageNet file takes: model.pretrained (per modality) -> build_network.
    from modistill.pipeline.runner import build_network
    from modistill.pipeline.session import load_experiment
    from modistill.recipes.stages import step1_stage

    raw = {"model": {"backbone": "resnet18", "width": 0.125}, "recipe": {"name": "garcia"}}
    stage = step1_stage("rgb", "RGB")
    scratch = build_network(load_experiment(raw, []), stage, 12)
    exp = load_experiment(raw, [f"model.pretrained={{rgb: {res.checkpoint}}}"])
    assert exp.model.pretrained_for("rgb") == str(res.checkpoint) and exp.model.pretrained_for("depth") is None
    net = build_network(exp, stage, 12)
    got = net.streams["rgb"].backbone.state_dict()
    assert torch.equal(got["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])
    assert not torch.equal(got["layer4.1.conv2.weight"], scratch.streams["rgb"].backbone.state_dict()[
        "layer4.1.conv2.weight"])
    assert got["fc.weight"].shape == (12, sd["fc.weight"].shape[1])  # the joint regressor is not carried over
    report = load_pretrained(create_model("resnet18", num_classes=12, width=0.125), res.checkpoint)
    assert report.reinitialised == ["fc.weight", "fc.bias"] and not report.inflated


def test_tiny_pretraining_learns(trained):
    _, res = trained
    held = res.info.held_out
    assert held["after_loss"] < held["before_loss"]
    assert held["after_parts"] < held["before_parts"]
    hist = res.info.history
    assert len(hist) == 2 and hist[1]["loss"] < hist[0]["loss"]


def test_second_call_reuses_and_killed_run_resumes(trained):
    out, res = trained
    ckpt = res.checkpoint
    stamp = ckpt.stat().st_mtime_ns
    again = pretrain(out, TINY, progress=False)
    assert again.reused and again.checkpoint == ckpt and ckpt.stat().st_mtime_ns == stamp
    # A run killed after its last epoch's checkpoint but before writing the trunk: it resumes, trains nothing.
    data = ckpt.read_bytes()
    ckpt.unlink()
    (ckpt.parent / "pretrain.json").unlink()
    resumed = pretrain(out, TINY, progress=False)
    assert not resumed.reused and resumed.checkpoint.read_bytes() == data  # same weights, same bytes
    assert resumed.info.history == res.info.history  # the same two epochs, read back, not retrained
    # Other settings -> another content-addressed folder.
    assert pretrain_dir(out, dataclasses.replace(TINY, epochs=3)) != pretrain_dir(out, TINY)


def test_pretext_shards_resume(trained):
    out, _ = trained
    folder = pretext_dir(out, TINY_PT)
    shards = sorted(folder.glob("shard-*.npz"))
    before = {p.name: p.read_bytes() for p in shards}
    (folder / "pretext.json").unlink()
    shards[0].unlink()
    write_pretext(out, TINY_PT)
    assert {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.npz"))} == before
    x, parts, joints = load_pretext(out, TINY_PT, "depth")
    assert x.shape == (96, 32, 32, 3) and parts.shape == (96, 16, 16) and joints.shape == (96, 25, 2)


def _doc_commands(doc: Path) -> list[str]:
    text = doc.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith("modistill pretrain")]


def test_docs_pretrain_commands_run(tmp_path, capsys):
    cmds = _doc_commands(DOCS / "pretrain.md")
    assert cmds, "docs/pretrain.md shows no `modistill pretrain` command"
    for cmd in cmds:
        argv = shlex.split(cmd.split("#")[0])[1:]
        argv[1] = str(tmp_path / argv[1])  # OUT under tmp
        # Small data: the documented command with the test's sizes appended (argparse: the last value wins).
        argv += ["--frames", "64", "--epochs", "1", "--width", "0.125", "--size", "32", "--workers", "1",
                 "--no-progress"]
        assert cli_main(argv) == 0
        printed = capsys.readouterr().out
        for line in printed.strip().splitlines():
            modality, path = line.split(": ", 1)
            assert modality in ("rgb", "depth") and Path(path).is_file()


def test_pretext_loss_pieces_by_hand():
    from modistill.models.pretext import PretextOutput, balanced_part_weights, joint_cells, pretext_loss

    parts = torch.tensor([0, 0, 0, 0, 1, 1, 2])  # frequencies 4/7, 2/7, 1/7; median 2/7
    assert torch.allclose(balanced_part_weights(parts, 4, 1.0), torch.tensor([0.5, 1.0, 2.0, 1.0]))
    assert torch.allclose(balanced_part_weights(parts, 3, 0.5), torch.tensor([0.5, 1.0, 2.0]).sqrt())
    assert torch.equal(balanced_part_weights(parts, 3, 0.0), torch.ones(3))
    j = torch.tensor([[[0.0, 0.0], [0.99, 0.5], [1.2, -0.1]]])
    assert joint_cells(j, 8).tolist() == [[0, 4 * 8 + 7, 7]]
    # A confident cell gives its centre back as the expected position.
    logits = torch.full((1, 25, 64), -50.0)
    logits[0, :, 4 * 8 + 7] = 50.0
    out = PretextOutput(parts=torch.zeros(1, 3, 2, 2), joint_logits=logits)
    assert torch.allclose(out.joints()[0, 0], torch.tensor([7.5 / 8, 4.5 / 8]))
    # Loss: the parts' weighted cross-entropy (uniform logits: log 3) plus the joints' (log 64 at uniform logits).
    out = PretextOutput(parts=torch.zeros(1, 3, 2, 2), joint_logits=torch.zeros(1, 25, 64))
    total, terms = pretext_loss(out, torch.tensor([[[0, 1], [2, 2]]]), torch.rand(1, 25, 2), 0.5,
                                torch.tensor([0.5, 1.0, 2.0]))
    assert torch.isclose(terms["parts"], torch.log(torch.tensor(3.0)))
    assert torch.isclose(total, torch.log(torch.tensor(3.0)) + 0.5 * torch.log(torch.tensor(64.0)))


def test_docs_demo_by_hand_matches_the_demo():
    """docs/demo.md's by-hand commands give the demo's dataset and name the demo's pretrained checkpoints."""
    from modistill.apps.demo import FULL
    from modistill.commands import synth as synth_cmd
    from modistill.data.synth import make_config, sample_names

    text = (DOCS / "demo.md").read_text()
    block = text[text.index("## Reproducing by hand"):]
    for m in ("rgb", "depth"):
        d = pretrain_dir("demo_out/pretrain", dataclasses.replace(FULL.pretrain, modality=m))
        assert f"{d}/{CHECKPOINT}" in block
    line = next(ln for ln in block.splitlines() if ln.startswith("modistill synth"))
    import argparse

    parser = argparse.ArgumentParser()
    synth_cmd.register(parser)
    args = parser.parse_args(shlex.split(line)[2:])
    reps = {p: n for subjects, n in args.subject_replications for p in subjects}
    by_hand = make_config(args.preset, subjects=args.subjects, cameras=args.cameras, subject_replications=reps)
    demo = make_config(FULL.preset, **dict(FULL.synth_overrides))
    assert sample_names(by_hand) == sample_names(demo) and len(sample_names(demo)) == 792


def test_quick_demo_starts_both_streams_from_the_pretrained_trunks(tmp_path):
    """`modistill demo --quick` pretrains once and loads the trunks through model.pretrained, per modality."""
    import json

    out = tmp_path / "demo"
    assert cli_main(["demo", "--quick", "--no-progress", "--out", str(out), "--workers", "1"]) == 0
    from modistill.pipeline.session import load_experiment

    exp = load_experiment(out / "runs" / "seed0" / "config.yaml")
    paths = exp.model.pretrained
    assert isinstance(paths, dict) and set(paths) == {"rgb", "depth"}
    assert all(Path(p).is_file() and Path(p).parent.parent == out / "pretrain" for p in paths.values())
    metrics = json.loads((out / "metrics.json").read_text())
    assert "pretrain_s" in metrics["timings_s"]
    # The report compares rows 1, 2, 8, 15 per class and gives the gap per kind of synthetic class.
    assert [g["group"] for g in metrics["class_groups"]] == ["depth pairs", "image-plane"]
    assert set(metrics["per_class"]) == {"1", "2", "8", "15", "15-nc"}  # 15-nc: the released route
    # Both final RGB-only models get their gap and their check against RGB step 1 (one value per seed).
    assert len(metrics["gap_closed_nc"]["values"]) == 1
    assert len(metrics["checks"]["final_nc_beats_rgb_step1_per_run"]) == 1
    assert "14-init" in {row["row"] for row in metrics["table"]}
    assert "### The gap per class group" in (out / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed support")
def test_quick_demo_under_torchrun_runs_each_step_once(tmp_path):
    """`torchrun --nproc_per_node 2 -m modistill.cli demo --quick` (gloo): rank 0 generates, prepares and writes,
    both ranks train every stage and both trunks together, and each line is printed once. Before, the process
    group was joined only by the first training stage, so `is_main()` was true on every rank until then: both
    ranks generated the data into the same folder, both pretrained, and the job then deadlocked (this test's
    time limit)."""
    from _torchrun import torchrun

    proc = torchrun(["-m", "modistill.cli", "demo", "--quick", "--no-progress", "--out", "demo"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    err = proc.stderr
    for line in ("generating the synthetic dataset", "preparing the cache", "pretrain rgb: held-out",
                 "pretrain depth: held-out", "step1_rgb: test accuracy", "step2: test accuracy"):
        assert err.count(line) == 1, (line, err[-3000:])
    assert err.count("step4: test accuracy") == 2, err[-3000:]  # the paper's route and the released one (15-nc)
    assert "[rank 1]" not in err, err[-3000:]  # rank 1 logs warnings only, and there are none
    assert proc.stdout.count("report: ") == 1
    assert (tmp_path / "demo" / "report.md").is_file()
    assert len(list((tmp_path / "demo" / "pretrain").glob("*/backbone.safetensors"))) == 2
