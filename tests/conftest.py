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
