"""The recipe pipeline around single stages: a killed stage resumed gives the same result as an uninterrupted
one, and `modistill ablation` reuses the content-addressed stages of an earlier run in the same folder."""

from __future__ import annotations

import json
import logging

import pytest
from _recipe_utils import (
    TINY_MODEL,
    differing,
    fake_finished_stage,
    make_exp,
    stream_state,
    tiny_cache,
)
from safetensors.torch import load_file

from modistill.cli import main as cli_main
from modistill.pipeline import runner
from modistill.pipeline.files import RunResultsFile
from modistill.pipeline.runner import run_recipe
from modistill.pipeline.session import cache_datasets
from modistill.reporting.ablation import AblationFile

TIMING = {"time_s", "samples_per_s"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tiny_cache(tmp_path_factory)


class Killed(Exception):
    pass


def _strip(history):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


def _step3_exp(cache, out_dir):
    """Two epochs of step 3 (frozen teacher, connections, eq. 7: the stage with the most state to restore)
    on top of fabricated earlier stages."""
    exp = make_exp(cache, out_dir, epochs=2)
    fake_finished_stage(exp, "step1_rgb", seed=1)
    fake_finished_stage(exp, "step1_depth", seed=2)
    w2 = fake_finished_stage(exp, "step2", seed=3)
    return exp, w2


def test_kill_and_resume_matches_an_uninterrupted_run(cache, tmp_path, monkeypatch):
    exp_a, _ = _step3_exp(cache, tmp_path / "a")
    factory, k, _ = cache_datasets(exp_a)
    ref = run_recipe(exp_a, factory, k, only=["step3"])["step3"]

    exp_b, w2 = _step3_exp(cache, tmp_path / "b")
    real = runner.train_stage

    def killed_after_epoch_1(model, **kw):
        def hook(epoch, record):
            if epoch == 1:
                raise Killed(f"killed after epoch {epoch}")

        return real(model, **kw, on_epoch_end=hook)

    monkeypatch.setattr(runner, "train_stage", killed_after_epoch_1)
    with pytest.raises(Killed):
        run_recipe(exp_b, factory, k, only=["step3"])
    monkeypatch.setattr(runner, "train_stage", real)
    stage_dir = next((tmp_path / "b" / "stages").glob("step3-*"))
    assert not (stage_dir / "result.json").exists()  # the stage did not finish ...
    assert (
        json.loads((stage_dir / "checkpoints" / "last.json").read_text())["epoch"] == 1
    )  # ... after epoch 1

    res = run_recipe(exp_b, factory, k, only=["step3"], resume=True)["step3"]
    assert not res.reused and res.key == ref.key and stage_dir == res.dir
    a, b = ref.result, res.result
    assert a["test"] == b["test"] and a["val"] == b["val"] and a["best_epoch"] == b["best_epoch"]
    assert _strip(a["history"]) == _strip(b["history"]) and len(a["history"]) == 2
    for name in ("best.safetensors", "last.safetensors", "last.optim.safetensors"):
        ta = load_file(str(ref.dir / "checkpoints" / name))
        tb = load_file(str(res.dir / "checkpoints" / name))
        assert differing(ta, tb) == [], name
    # The resumed run kept the teacher frozen, bit for bit, through both halves.
    last = load_file(str(res.dir / "checkpoints" / "last.safetensors"))
    assert differing(stream_state(last, "depth"), stream_state(w2, "depth")) == []
    # One record per epoch in the log, as if never interrupted.
    epochs = [json.loads(x) for x in (res.dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r.get("kind") == "epoch"] == [1, 2]


def _ablation_config(cache, tmp_path):
    """``(out_dir, config path)`` of a one-epoch tiny experiment for `modistill ablation` on ``cache``."""
    root = tmp_path / "abl"
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"out_dir: {root}\n"
        f"data: {{cache: {cache}, frames: 2}}\n"
        f"model: {{backbone: {TINY_MODEL['backbone']}, width: {TINY_MODEL['width']}}}\n"
        "train: {epochs: 1, batch_size: 4, progress: false, tensorboard: false}\n"
    )
    return root, cfg


def test_ablation_reuses_step1_from_an_earlier_run(cache, tmp_path, caplog, capsys):
    root, cfg = _ablation_config(cache, tmp_path)
    caplog.set_level(logging.INFO, logger="modistill")
    # An earlier run in the same folder trained step 1.
    assert cli_main(["train", str(cfg), "--stage", "step1_rgb", "--stage", "step1_depth"]) == 0
    step1 = {p.name: p for p in (root / "stages").iterdir()}
    assert sorted(n.split("-")[0] for n in step1) == ["step1_depth", "step1_rgb"]
    before = {n: (p / "checkpoints" / "best.safetensors").read_bytes() for n, p in step1.items()}
    stamps = {n: (p / "result.json").stat().st_mtime_ns for n, p in step1.items()}
    caplog.clear()

    assert cli_main(["ablation", str(cfg), "--variants", "step2_no_connections"]) == 0
    assert "step1_rgb: reusing" in caplog.text and "step1_depth: reusing" in caplog.text
    assert "step2: reusing" not in caplog.text
    for n, p in step1.items():  # untouched
        assert (p / "checkpoints" / "best.safetensors").read_bytes() == before[n]
        assert (p / "result.json").stat().st_mtime_ns == stamps[n]
    new = [p for p in (root / "stages").iterdir() if p.name not in step1]
    assert [p.name.split("-")[0] for p in new] == ["step2"]
    stage = json.loads((new[0] / "stage.json").read_text())["stage"]
    assert stage["connections"] == [] and stage["paper_row"] == "9"
    rows = AblationFile.read(root / "ablation.json").rows
    assert [(r["variant"], r["row"], r["stage"]) for r in rows] == [("step2_no_connections", "9", "step2")]
    result = json.loads((new[0] / "result.json").read_text())
    assert rows[0]["accuracy"] == result["test"]["accuracy"]
    assert "| 9 | step2_no_connections | step2 |" in (root / "ablation.md").read_text()
    variant_results = RunResultsFile.read(root / "variants" / "step2_no_connections" / "results.json").stages
    assert set(variant_results) == {"step1_rgb", "step1_depth", "step2"}

    caplog.clear()  # the same table again: nothing trains
    assert cli_main(["ablation", str(cfg), "--variants", "step2_no_connections"]) == 0
    assert "step2: reusing" in caplog.text
    assert sorted(p.name for p in (root / "stages").iterdir()) == sorted([*step1, new[0].name])

    caplog.clear()  # its own folder, the earlier stages through stage_root: nothing trains either
    other = tmp_path / "study"
    assert cli_main(["ablation", str(cfg), f"out_dir={other}", f"stage_root={root / 'stages'}",
                     "--variants", "step2_no_connections"]) == 0
    assert "step2: reusing" in caplog.text and not (other / "stages").exists()
    assert AblationFile.read(other / "ablation.json").rows[0]["accuracy"] == rows[0]["accuracy"]
    capsys.readouterr()


def test_zero_epoch_stage_keeps_its_handover_and_is_not_retrained(cache, tmp_path):
    exp, w2 = _step3_exp(cache, tmp_path / "c")
    exp.stage_epochs = {"step3": 0}  # only the hand-over and the evaluation run
    factory, k, _ = cache_datasets(exp)
    first = run_recipe(exp, factory, k, only=["step3"])["step3"]
    # Its result is the handed-over weights, saved where later stages and `eval`/`export` look for them.
    best = load_file(str(first.dir / "checkpoints" / "best.safetensors"))
    for s in ("depth", "hall"):
        assert differing(stream_state(best, s), stream_state(w2, "depth")) == [], s
    again = run_recipe(exp, factory, k, only=["step3"], resume=True)["step3"]
    assert not first.reused and again.reused and again.result == first.result


def test_ablation_over_seeds_reports_mean_std_and_per_seed_values(cache, tmp_path):
    root, cfg = _ablation_config(cache, tmp_path)
    assert cli_main(["ablation", str(cfg), "--variants", "step2_no_connections", "--seeds", "3", "4"]) == 0
    f = AblationFile.read(root / "ablation.json")
    assert f.seeds == [3, 4] and f.elapsed_s > 0
    # One row per seed, each equal to that seed's own stage result (the seeds trained separately).
    assert [(r["row"], r["seed"]) for r in f.rows] == [("9", 3), ("9", 4)]
    for r in f.rows:
        res = RunResultsFile.read(root / "variants" / "step2_no_connections" / f"seed{r['seed']}" / "results.json")
        assert r["accuracy"] == res.stages["step2"]["test_accuracy"]
    stage_dirs = sorted(p.name.split("-")[0] for p in (root / "stages").iterdir())
    assert stage_dirs == ["step1_depth"] * 2 + ["step1_rgb"] * 2 + ["step2"] * 2  # per seed, shared folder
    (s,) = f.summary
    assert s["seeds"] == [3, 4] and s["accuracy"]["values"] == [r["accuracy"] for r in f.rows]
    md = (root / "ablation.md").read_text()
    assert "mean ± sample std over seeds [3, 4]" in md and "Wall time of the study" in md
    a = s["accuracy"]
    cells = f"{s['evaluation']} | {100 * a['mean']:.1f} ± {100 * a['std']:.1f} |"
    assert f"| 9 | step2_no_connections | step2 | {cells}" in md
