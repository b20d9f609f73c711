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
