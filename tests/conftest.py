"""Shared fixtures: the real SAR data folder and a few synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SARRAY_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The read-only real SAR data (../shared/data). Missing data is an error, not a skip."""
    if not (DATA / "README.md").is_file():
        pytest.fail(f"real SAR test data not found at {DATA}; set SARRAY_TEST_DATA")
    return DATA
