"""The paper's NTU RGB+D numbers, shown beside ours for reference (Garcia et al. 2018 Tables 2-3; REF §5).

Accuracies in percent; ``None`` where the paper reports no number.
"""

from __future__ import annotations

# Table 2 row -> (model, test input, cross-subject, cross-view)
TABLE2: dict[str, tuple[str, str, float | None, float | None]] = {
    "1": ("Step 1, depth stream", "depth", 70.44, 75.16),
    "2": ("Step 1, RGB stream", "RGB", 66.52, 71.39),
    "3": ("Hoffman et al. one-step, eq. 3", "RGB", 64.64, None),
    "4": ("Hoffman et al. one-step, eq. 5", "RGB", 68.60, None),
    "5": ("Hoffman et al. one-step, eq. 7", "RGB", 70.70, None),
    "6": ("Step 2, its depth stream alone", "depth", 71.09, 77.30),
    "7": ("Step 2, its RGB stream alone", "RGB", 66.68, 56.26),
    "8": ("Step 2, two-stream teacher", "RGB + depth", 79.73, 81.43),
    "9": ("Step 2 without connections", "RGB + depth", 78.27, 82.11),
    "10": ("Step 3 hallucination, eq. 3, no connections", "RGB", 69.93, 70.64),
    "11": ("Step 3 hallucination, eq. 3", "RGB", 70.47, None),
    "12": ("Step 3 hallucination, eq. 5 ('eq. 4')", "RGB", 71.52, None),
    "13": ("Step 3 hallucination, eq. 7", "RGB", 71.93, 74.10),
    "14": ("Step 3 hallucination, eq. 7, no connections", "RGB", 71.10, None),
    "15": ("Step 4, final RGB-only model", "RGB", 73.42, 77.21),
}

# Which training setting each ablation row of Table 2 is (the recipes label their evaluations from these):
# step 3 by (loss, connections): eq. 3 = "hall", eq. 5-6 = "gd" (Table 2's "eq. (4)"), eq. 7 = "eq7".
STEP3_ROWS: dict[tuple[str, bool], str] = {
    ("hall", False): "10", ("hall", True): "11", ("gd", True): "12", ("eq7", True): "13", ("eq7", False): "14",
}
# The one-step baseline of Hoffman et al. 2016 by its distillation term.
HOFFMAN_ROWS: dict[str, str] = {"hall": "3", "gd": "4", "eq7": "5"}
# Step 2 with / without cross-stream connections.
STEP2_ROWS: dict[bool, str] = {True: "8", False: "9"}

# Table 3 (cross-view, step-2 model with multiplicative depth noise)
NOISE_SIGMA2: tuple[float, ...] = (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
NOISE_CV: tuple[float, ...] = (81.43, 81.34, 81.12, 76.85, 62.47, 51.43)
NOISE_VOID_CV = 14.24
NOISE_RGB_FINAL_CV = 77.21

# Fraction of the RGB (row 2) -> teacher (row 8) gap closed by the final model (row 15): REF §5.
GAP_CLOSED = {"xsub": 0.52, "xview": 0.58}


def paper_column(protocol: str) -> int:
    """Index into a TABLE2 entry of the paper column matching ``protocol`` (cross-view for xview)."""
    return 3 if protocol == "xview" else 2


# Row labels of our motion table (recipes/motion.py; the ICONIP 2020 abstract reports no table we could
# reproduce, so these rows carry no paper number; row 2 is the RGB stage shared with Table 2).
MOTION_ROWS: dict[str, tuple[str, str]] = {
    "M1": ("flow teacher (flow stream alone)", "flow"),
    "2": ("RGB stream alone (RGB-only baseline)", "RGB"),
    "M3": ("two-stream RGB + flow, late fusion", "RGB + flow"),
    "M4": ("motion student alone", "RGB"),
    "M5": ("deployed model: RGB + motion student", "RGB"),
}
