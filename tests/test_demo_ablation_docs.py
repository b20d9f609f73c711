"""docs/demo.md's full Table 2 study and docs/recipes.md's step-4 study: their `modistill ablation` commands, run
in the demo's folder, plan exactly the stages the demo trained for the rows they share (so they reuse them); the
Table 2 command covers every Table 2 row."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from modistill.apps.demo import FULL, demo_base_config, demo_pretrained
from modistill.commands import ablation as ablation_cmd
from modistill.pipeline.runner import plan_recipe
from modistill.pipeline.session import load_experiment
from modistill.recipes.ablation import VARIANTS, resolve_variants, variant_config

ROOT = Path(__file__).resolve().parents[1]


def _docs_command(doc: str = "demo.md", section: str = "## The full Table 2 study") -> argparse.Namespace:
    text = (ROOT / "docs" / doc).read_text()
    block = text[text.index(section):]
    line = next(ln for ln in block.splitlines() if ln.startswith("modistill ablation"))
    parser = argparse.ArgumentParser()
    ablation_cmd.register(parser)
    return parser.parse_args(shlex.split(line)[2:])


def test_docs_table2_command_covers_every_row_over_three_seeds():
    args = _docs_command()
    assert args.seeds == [0, 1, 2]
    rows = {r for v in resolve_variants(args.variants) for r in v.rows}
    # Table 2 rows 1-15 and supplement Table 1 (the inverted direction).
    assert {str(i) for i in range(1, 16)} <= rows and {"6a", "7a", "8a", "13a", "15a"} <= rows


STEP4_STUDY = ("recipes.md", "### Step 4: what the hall stream receives when depth is gone")


@pytest.mark.parametrize("seed", [0, 2])
@pytest.mark.parametrize("where", [("demo.md", "## The full Table 2 study"), STEP4_STUDY])
def test_docs_study_commands_reuse_the_demos_stages(seed, where):
    args = _docs_command(*where)
    doc = load_experiment(ROOT / args.config, [*args.overrides, f"train.seed={seed}"])
    assert args.seeds == [0, 1, 2]
    # The Table 2 study writes into the demo's folder; the step-4 study into its own, with the demo's stages.
    assert doc.out_dir == ("demo_out" if where[0] == "demo.md" else "demo_out/step4_sources")
    assert doc.stage_root in (None, "demo_out/stages")
    demo = load_experiment(demo_base_config("demo_out", FULL, demo_pretrained("demo_out", FULL.pretrain)),
                           [f"train.seed={seed}"])
    demo.stage_root = "demo_out/stages"  # as apps/demo.py runs every seed
    for name in ("paper", "step4_from_no_connections"):  # the demo trains both (steps 3-4 of the second)
        v = VARIANTS[name]
        want = {n: p.dir for n, p in plan_recipe(variant_config(demo, v)).items()}
        got = {n: p.dir for n, p in plan_recipe(variant_config(doc, v)).items()}
        assert got == want, name


def test_docs_scale_check_commands_double_the_training_set_only():
    """docs/demo.md's scale check: its synth command makes the demo's 792 videos plus a second recording of every
    training performer (432 training videos, validation and test unchanged), prepare caches that folder, and the
    ablation trains the demo's two routes on it over the demo's seeds from the demo's pretrained trunks."""
    from modistill.commands import synth as synth_cmd
    from modistill.data.ntu import split_with_validation
    from modistill.data.synth import make_config, sample_names

    section = "### With twice the training videos"
    block = (ROOT / "docs" / "demo.md").read_text().split(section, 1)[1].split("\n#", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("modistill ")]
    assert [ln.split()[1] for ln in lines] == ["synth", "prepare", "ablation"]
    parser = argparse.ArgumentParser()
    synth_cmd.register(parser)
    synth = parser.parse_args(shlex.split(lines[0])[2:])
    reps = {p: n for subjects, n in synth.subject_replications for p in subjects}
    names = sample_names(make_config(synth.preset, subjects=synth.subjects, cameras=synth.cameras,
                                     subject_replications=reps))
    demo = sample_names(make_config(FULL.preset, **dict(FULL.synth_overrides)))
    assert set(demo) < set(names) and len(names) == 1008
    ours, theirs = split_with_validation(names, "xsub"), split_with_validation(demo, "xsub")
    assert len(ours["train"]) == 2 * len(theirs["train"]) == 432
    assert ours["val"] == theirs["val"] and ours["test"] == theirs["test"]
    prepare = shlex.split(lines[1])
    assert prepare[2] == synth.out and prepare[3] == "demo_x2/data/cache_64px"
    args = _docs_command(section=section)
    assert args.variants == ["paper", "step4_from_no_connections"] and args.seeds == [0, 1, 2]
    doc = load_experiment(ROOT / args.config, args.overrides)
    assert doc.data.cache == prepare[3] and doc.out_dir == "demo_x2"
    assert doc.model.pretrained == demo_pretrained("demo_out", FULL.pretrain)
