"""Fixtures of the evaluation tests (the synthetic high-resolution archive of tests/train)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sarray.testing.scenes import write_hr_archive


@pytest.fixture(scope="session")
def eval_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hr_archive(tmp_path_factory.mktemp("eval-archive"))
