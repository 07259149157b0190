"""Tiny seeded models and SAR tile batches for tests and benchmarks (torch imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sarray.models.normalise import compute_statistics


def tiny_replica(**overrides: Any) -> Any:
    """A tiny-preset :class:`~sarray.models.replica.Replica` with seeded random weights."""
    from sarray.models.replica import Replica, ReplicaConfig

    return Replica(ReplicaConfig(preset="tiny", **overrides))


def save_tiny_weights(path: str | Path, *, seed: int = 0) -> Path:
    """Save a seeded random tiny pipeline (with ControlNet) to ``path`` as safetensors."""
    from sarray.models.components import build_random_pipeline
    from sarray.models.loading import save_pipeline
    from sarray.models.presets import TINY

    return save_pipeline(build_random_pipeline(TINY, seed=seed), path)


def speckle_scene(
    shape: tuple[int, int] = (64, 64), *, pols: tuple[str, ...] = ("VV", "VH"), seed: int = 0,
    units: str = "linear", quantity: str = "amplitude", platform: str = "spaceborne",
    spacing_m: float = 10.0, sensor: str = "Sentinel-1A",
) -> tuple[np.ndarray, dict[str, Any]]:
    """A synthetic SAR scene: blocky reflectivity times Rayleigh speckle, with its attributes.

    Returns:
        ``(values (P, y, x) float32 in the requested units, scene attribute dict)``.
    """
    rng = np.random.default_rng(seed)
    y, x = shape
    coarse = rng.uniform(0.2, 2.0, size=(len(pols), max(y // 8, 1), max(x // 8, 1)))
    refl = np.kron(coarse, np.ones((8, 8)))[:, :y, :x]
    refl = np.pad(refl, ((0, 0), (0, y - refl.shape[1]), (0, x - refl.shape[2])), mode="edge")
    amplitude = refl * rng.rayleigh(1.0, size=(len(pols), y, x))
    if units == "db":
        values = 20 * np.log10(np.maximum(amplitude, 1e-6))
    elif quantity == "intensity":
        values = amplitude**2
    else:
        values = amplitude
    values = values.astype(np.float32)
    meta = {
        "units": units, "quantity": quantity, "polarisations": list(pols),
        "pixel_spacing_m": [spacing_m, spacing_m], "sensor": sensor, "platform": platform,
        "statistics": compute_statistics(values, units=units, quantity=quantity, polarisations=pols),
    }
    return values, meta


def batch_of(tiles: np.ndarray, meta: dict[str, Any], scene: str = "scene-a", start: int = 0) -> dict[str, Any]:
    """A replica batch of ``tiles`` ``(N, P, h, w)`` from one scene, tile indices start, start+1..."""
    return {
        "tiles": tiles,
        "scene_id": [scene] * len(tiles),
        "tile_index": list(range(start, start + len(tiles))),
        "meta": meta,
    }
