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
