"""Fixtures of the training tests: a tiny synthetic high-resolution archive, DeepSpeed on CPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sarray.testing.scenes import write_hr_archive

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def _deepspeed_on_cpu():
    """DeepSpeed JIT-builds a small op on its first initialize: cache it in the (git-ignored)
    repo folder so that only the first test run on a machine pays for it; CPU accelerator. Set
    for the training tests' session and restored after it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_EXTENSIONS_DIR", os.environ.get("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions")))
        mp.setenv("DS_ACCELERATOR", os.environ.get("DS_ACCELERATOR", "cpu"))
        yield


@pytest.fixture(scope="session")
def hr_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hr_archive(tmp_path_factory.mktemp("hr-archive"))
