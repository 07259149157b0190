"""Fixtures of the training tests: a tiny synthetic high-resolution archive, DeepSpeed on CPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
# DeepSpeed JIT-builds a small op on its first initialize: cache it in the (git-ignored) repo
# folder so that only the first test run on a machine pays for it.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
os.environ.setdefault("DS_ACCELERATOR", "cpu")


def make_archive(root: Path) -> Path:
    """Three synthetic airborne scenes at 1 m (amplitude: smooth structure x Rayleigh speckle)."""
    from rasterio.transform import from_origin

    from sarray.ingest.config import IngestConfig
    from sarray.ingest.run import ingest
    from sarray.testing.scenes import speckle_image, write_geotiff

    archive = root / "hr.zarr"
    for k, (shape, seed) in enumerate((((160, 192), 1), ((128, 128), 2), ((96, 160), 3))):
        amp = np.sqrt(speckle_image(shape, seed=seed, looks=1)).astype(np.float32)
        tif = write_geotiff(root / f"scene{k}.tif", amp, transform=from_origin(600000, 5700000, 1.0, 1.0),
                            descriptions=("HH",))
        ingest([tif], archive, IngestConfig(platform="airborne", units="linear", sensor="TestSAR",
                                            pols=("HH",), scene_id=f"hr-{k}"))
    return archive


@pytest.fixture(scope="session")
def hr_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_archive(tmp_path_factory.mktemp("hr-archive"))
