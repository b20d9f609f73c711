"""The report's per-class comparison (rows 1, 2, 8, 15, 15-nc side by side, mean over runs) and the RGB-to-teacher gap
per class group: hand-computed values on hand-made runs."""

from __future__ import annotations

import pytest

from modistill.data.synth import class_groups
from modistill.reporting.report import render_markdown
from modistill.reporting.summary import group_gaps, per_class_rows, summarize

NAMES = ["a", "b", "c"]


def _run(per_row: dict[str, list[float | None]]) -> dict:
    """A run whose stages each carry one labelled test evaluation with the given per-class accuracy."""
    stages = {}
    for row, pc in per_row.items():
        present = [x for x in pc if x is not None]
        ev = {"paper_row": row, "accuracy": sum(present) / len(present), "per_class": pc}
        stages[f"stage{row}"] = {"test": ev, "extra": {}}
    return {"dir": "run", "stages": stages, "robustness": None}


RUN0 = _run({"1": [0.5, 0.5, 1.0], "2": [0.0, 1.0, 0.5], "8": [1.0, 1.0, 1.0], "15": [0.5, 1.0, 0.5]})
RUN1 = _run({"1": [0.7, 0.5, 1.0], "2": [0.2, 0.8, 0.5], "8": [0.8, 1.0, 1.0], "15": [0.3, 1.0, 0.7]})


def test_per_class_rows_are_the_mean_over_runs():
    pcs = per_class_rows([RUN0, RUN1])
    assert list(pcs) == ["1", "2", "8", "15"]
    assert pcs["1"] == pytest.approx([0.6, 0.5, 1.0])
    assert pcs["2"] == pytest.approx([0.1, 0.9, 0.5])
    assert pcs["15"] == pytest.approx([0.4, 1.0, 0.6])


def test_a_row_missing_from_one_run_is_left_out_and_absent_classes_stay_none():
    partial = _run({"1": [0.5, None, 1.0], "2": [0.0, None, 0.5]})
    pcs = per_class_rows([partial, _run({"1": [0.7, None, 1.0]})])
    assert list(pcs) == ["1"]  # row 2 is in one run of two: no mean over a different set of runs
    assert pcs["1"][0] == pytest.approx(0.6) and pcs["1"][1] is None


def test_group_gaps_hand_computed():
    pcs = per_class_rows([RUN0, RUN1])
    (g1, g2) = group_gaps(pcs, NAMES, {"pairs": ["a", "b"], "rest": ["c"], "empty": ["zzz"]})
    # pairs: RGB (0.1 + 0.9) / 2 = 0.5, teacher (0.9 + 1.0) / 2 = 0.95, final (0.4 + 1.0) / 2 = 0.7
    assert g1["group"] == "pairs" and g1["classes"] == ["a", "b"]
    assert g1["gap"] == pytest.approx(0.45) and g1["closed"] == pytest.approx(0.2)
    assert g1["fraction_closed"] == pytest.approx(0.2 / 0.45)
    assert g1["accuracy"]["1"] == pytest.approx(0.55)
    # rest: RGB 0.5, teacher 1.0, final 0.6
    assert g2["gap"] == pytest.approx(0.5) and g2["fraction_closed"] == pytest.approx(0.2)
    assert group_gaps({"1": pcs["1"]}, NAMES, {"pairs": ["a"]}) == []  # needs rows 2, 8 and 15


def test_report_renders_the_per_class_table_and_the_groups():
    summary = summarize([RUN0, RUN1])
    summary["class_names"] = NAMES
    summary["final_confusion"] = [[3, 1, 0], [0, 4, 0], [0, 0, 4]]
    summary["class_groups"] = group_gaps(summary["per_class"], NAMES, {"pairs": ["a", "b"], "rest": ["c"]})
    md = render_markdown(summary, {})
    assert "## Per-class test accuracy (mean over runs)" in md
    assert "| a | 4 | 60 | 10 | 90 | 40 | +30 |" in md  # test videos from the confusion rows; 15 - 2 in points
    assert "| pairs | a, b | 55 | 50 | 95 | 70 | 45.0 | +20.0 | 44 % |" in md
    assert "| rest | c | 100 | 50 | 100 | 60 | 50.0 | +10.0 | 20 % |" in md


def test_report_without_the_rows_falls_back_to_the_final_model():
    run = {"dir": "run", "robustness": None, "stages": {"x": {"test": {"paper_row": "", "accuracy": 0.5}}}}
    summary = summarize([run])
    assert "per_class" not in summary
    summary.update(class_names=["a", "b"], final_confusion=[[1, 1], [0, 2]])
    md = render_markdown(summary, {})
    assert "## Per-class test accuracy (final model, first run)" in md and "| a | 50.0 | 2 |" in md


def test_synthetic_class_groups_follow_the_class_kinds():
    names = ["wave", "push_forward", "hold_up_red_sign", "hands_to_chest", "not_a_class", "hold_up_yellow_sign"]
    assert class_groups(names) == {
        "image-plane": ["wave"],
        "depth pairs": ["push_forward", "hands_to_chest"],
        "appearance pairs": ["hold_up_red_sign", "hold_up_yellow_sign"],
    }


def test_the_released_route_15nc_gets_its_own_gap_checks_and_columns():
    """Row 15-nc (step 4 from a step 3 without connections, trained by the demo beside row 15): its gap closed
    per run, whether it beats RGB step 1, its per-class column and its share of each group's gap."""
    run0 = _run({"1": [0.5, 0.5, 1.0], "2": [0.0, 1.0, 0.5], "8": [1.0, 1.0, 1.0], "15": [0.5, 1.0, 0.5],
                 "15-nc": [1.0, 1.0, 0.5]})
    run1 = _run({"1": [0.7, 0.5, 1.0], "2": [0.2, 0.8, 0.5], "8": [0.8, 1.0, 1.0], "15": [0.3, 1.0, 0.7],
                 "15-nc": [0.2, 0.8, 0.5]})
    s = summarize([run0, run1])
    # run 0: RGB 0.5, teacher 1.0, 15-nc 2.5/3 -> (5/6 - 1/2) / (1/2) = 2/3; run 1: 15-nc = RGB -> 0.
    assert s["gap_closed_nc"]["values"] == pytest.approx([2 / 3, 0.0])
    assert s["gap_closed_nc"]["paper"] is None and s["gap_closed"]["paper"] == 0.52
    assert s["checks"]["final_nc_beats_rgb_step1_per_run"] == [True, False]
    assert s["checks"]["final_nc_beats_rgb_step1"] is True
    assert list(s["per_class"]) == ["1", "2", "8", "15", "15-nc"]
    (g,) = group_gaps(s["per_class"], NAMES, {"pairs": ["a", "b"]})
    # pairs: RGB 0.5, teacher 0.95, 15-nc (0.6 + 0.9) / 2 = 0.75 -> closed 0.25 of a 0.45 gap
    assert g["closed_nc"] == pytest.approx(0.25) and g["fraction_closed_nc"] == pytest.approx(0.25 / 0.45)
    assert g["closed"] == pytest.approx(0.2)  # row 15's, unchanged
    s.update(class_names=NAMES, final_confusion=[[3, 1, 0], [0, 4, 0], [0, 0, 4]], class_groups=[g])
    md = render_markdown(s, {})
    assert "| a | 4 | 60 | 10 | 90 | 40 | 60 | +30 | +50 |" in md
    assert "| pairs | a, b | 55 | 50 | 95 | 70 | 75 | 45.0 | +20.0 | 44 % | +25.0 | 56 % |" in md
    assert "- row 15-nc, step 4 from a step 3 without connections: (15-nc − 2) / (8 − 2) = **33.3 ± 47.1 %**" in md
