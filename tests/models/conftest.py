"""Fixtures of the model tests: real Sentinel-1 tiles, a tiny seeded replica, saved tiny weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SPAIN = Path("sentinel1") / "sen1floods11" / "Spain_7370579_S1Hand.tif"
UMBRA = Path("umbra") / "umbra_yasur_train.tif"


def _read(path: Path, window: tuple[int, int, int, int]) -> np.ndarray:
    import rasterio
    import rasterio.windows

    row, col, h, w = window
    with rasterio.open(path) as ds:
        return ds.read(window=rasterio.windows.Window(col, row, w, h)).astype(np.float32)


@pytest.fixture(scope="session")
def spain(data_dir: Path) -> tuple[np.ndarray, dict]:
    """Sentinel-1 VV/VH sigma0 in dB, 128 x 128 px, with statistics over the whole 512 x 512 file."""
    from sarray.models.normalise import compute_statistics

    full = _read(data_dir / SPAIN, (0, 0, 512, 512))
    meta = {
        "units": "db", "quantity": "intensity", "polarisations": ["VV", "VH"],
        "pixel_spacing_m": [10.0, 10.0], "sensor": "Sentinel-1", "platform": "spaceborne",
        "statistics": compute_statistics(
            full, units="db", quantity="intensity", polarisations=["VV", "VH"]
        ),
    }
    return full[:, 128:256, 128:256].copy(), meta


@pytest.fixture(scope="session")
def umbra(data_dir: Path) -> tuple[np.ndarray, dict]:
    """Umbra X-band single-pol 8-bit DN, 64 x 64 px."""
    from sarray.models.normalise import compute_statistics

    full = _read(data_dir / UMBRA, (600, 800, 256, 256))
    meta = {
        "units": "dn", "quantity": "amplitude", "polarisations": ["VV"],
        "pixel_spacing_m": [0.59, 0.59], "sensor": "Umbra-04", "platform": "spaceborne",
        "statistics": compute_statistics(full, units="dn", quantity="amplitude", polarisations=["VV"]),
    }
    return full[:, :64, :64].copy(), meta


@pytest.fixture(scope="session")
def tiny():
    """The tiny preset with seeded random weights, scale 4 (shared: replicas are stateless)."""
    from sarray.testing.models import tiny_replica

    return tiny_replica(scale=4)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Tiny weights saved with save_pretrained (safetensors), seed 0."""
    from sarray.testing.models import save_tiny_weights

    return save_tiny_weights(tmp_path_factory.mktemp("tiny-weights") / "tiny", seed=0)



def pytest_configure(config: pytest.Config) -> None:
    # diffusers' Euler scheduler calls np.array(tensor, copy=False) internally (numpy 2 notice).
    config.addinivalue_line(
        "filterwarnings", "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
    )
