"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def ntu_fixture_dir() -> Path:
    """Where the real NTU RGB+D sample files live (MODISTILL_NTU_FIXTURES overrides)."""
    return Path(os.environ.get("MODISTILL_NTU_FIXTURES", REPO.parent / "shared" / "fixtures" / "ntu"))


@pytest.fixture(scope="session")
def ntu_fixtures() -> Path:
    d = ntu_fixture_dir()
    if not (d / "S001C001P001R001A001.skeleton").is_file():
        pytest.skip(f"NTU fixtures not found at {d} (set MODISTILL_NTU_FIXTURES to their folder)")
    return d


# Hypothesis' per-example deadline (200 ms) measures the machine's load, not the code: on a busy 2-core CI
# machine the first example of a test can exceed it and fail a correct test. Examples stay bounded by their
# own small sizes; the deadline is off for every test.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("modistill", deadline=None)
_hypothesis_settings.load_profile("modistill")
