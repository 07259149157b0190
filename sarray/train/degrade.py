"""The degradation model: a high-resolution tile -> the satellite-like tile it is trained from.

Training pairs are made on the fly: the target is a high-resolution tile from the archive, the
condition is the same tile degraded to ``scale`` times coarser spacing. The degradation, in
linear intensity (``I = A**2``), is three steps:

1. **Low-pass**, one of
   - ``multilook`` (default): the box average of intensity over ``scale`` x ``scale`` pixels,
     :func:`sarray.archive.radiometry.multilook_intensity`, which is sarray's documented
     multilook and what the consistency step (:mod:`sarray.stitch.consistency`) inverts;
   - ``gaussian``: a Gaussian low-pass of intensity with sigma ``0.5 * scale`` fine pixels
     (an impulse response wider than one coarse pixel, like a real coarse sensor's), then the
     same box average.
2. **Decimation** by ``scale``: one value per ``scale`` x ``scale`` box (step 1 includes it).
3. **Speckle of the coarse sensor**: multiply by independent unit-mean Gamma draws with
   ``speckle_looks`` looks (e.g. about 4.4 for a Sentinel-1 IW GRD). Averaging ``scale**2``
   fine pixels already reduces the fine sensor's speckle; the Gamma factor puts back the coarse
   sensor's own, independent, speckle. ``speckle_looks=None`` skips it (a deterministic
   degradation: then the multilook of the target equals the condition exactly).

NaN (no data) in a box makes the coarse pixel NaN. The degradation is pure numpy and seeded:
the same tile and ``rng`` state give the same condition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sarray.archive.radiometry import from_intensity, multilook_intensity, to_intensity
from sarray.errors import ConfigError
from sarray.tiles.grid import check_scale

LOWPASS_METHODS: tuple[str, ...] = ("multilook", "gaussian")


@dataclass(frozen=True, kw_only=True)
class DegradationConfig:
    """How a fine tile becomes a coarse one.

    Args:
        scale: coarse spacing = fine spacing x ``scale``; a power of two in [1, 64].
        lowpass: ``multilook`` (box average of intensity) or ``gaussian`` (Gaussian low-pass of
            intensity, sigma ``0.5 * scale`` fine pixels, then the box average).
        speckle_looks: equivalent number of looks of the coarse sensor's speckle, multiplied in
            as unit-mean Gamma noise; None for no added speckle.
    """

    scale: int = 4
    lowpass: str = "multilook"
    speckle_looks: float | None = 4.4

    def __post_init__(self) -> None:
        check_scale(self.scale)
        if self.lowpass not in LOWPASS_METHODS:
            raise ConfigError(f"`lowpass` ({self.lowpass!r}) must be one of {LOWPASS_METHODS}")
        if self.speckle_looks is not None and not (
            np.isfinite(self.speckle_looks) and self.speckle_looks > 0
        ):
            raise ConfigError(
                f"`speckle_looks` ({self.speckle_looks!r}) must be a positive number of looks "
                "(e.g. 4.4 for Sentinel-1 IW GRD) or None for no added speckle"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DegradationConfig:
        return cls(**data)


def _gaussian_intensity(intensity: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of the last two axes (reflect padding), NaN propagating."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = intensity.astype(np.float64)
    for axis in (-2, -1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for i, w in enumerate(k):
            acc += w * np.take(padded, np.arange(i, i + n), axis=axis)
        out = acc
    return out


def degrade_intensity(
    intensity: np.ndarray, config: DegradationConfig, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Degrade linear intensity ``(..., H, W)`` to ``(..., H // scale, W // scale)``.

    Args:
        intensity: fine intensity; edges that do not fill a whole box are dropped.
        config: the degradation.
        rng: source of the speckle draws (required when ``speckle_looks`` is set).

    Returns:
        float64 coarse intensity.
    """
    x = np.asarray(intensity, dtype=np.float64)
    if x.ndim < 2 or x.shape[-2] < config.scale or x.shape[-1] < config.scale:
        raise ConfigError(
            f"`intensity` of shape {x.shape} is smaller than one {config.scale} x "
            f"{config.scale} box: pass tiles at least `scale` pixels on each side"
        )
    # 1. Low-pass (and 2. decimate: the box average keeps one value per box).
    if config.lowpass == "gaussian" and config.scale > 1:
        x = _gaussian_intensity(x, 0.5 * config.scale)
    coarse = multilook_intensity(x, config.scale)
    # 3. The coarse sensor's speckle.
    if config.speckle_looks is not None:
        if rng is None:
            raise ConfigError(
                "`rng` is None but `speckle_looks` is set: pass np.random.default_rng(seed)"
            )
        L = float(config.speckle_looks)
        coarse = coarse * rng.gamma(L, 1.0 / L, size=coarse.shape)
    return coarse


def degrade(
    values: np.ndarray,
    *,
    units: str,
    quantity: str,
    config: DegradationConfig,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Degrade a tile in archive units ``(..., H, W)``; the result is in the same units.

    Returns:
        float32 ``(..., H // scale, W // scale)``.
    """
    i_fine = to_intensity(np.asarray(values, dtype=np.float64), units=units, quantity=quantity)
    i_coarse = degrade_intensity(i_fine, config, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(from_intensity(i_coarse, units=units, quantity=quantity), dtype=np.float32)


def coarse_spacing(spacing_m: tuple[float, float] | list[float] | None, scale: int) -> tuple[float, float] | None:
    """The pixel spacing ``(dy, dx)`` of a tile degraded by ``scale`` (None stays None)."""
    if spacing_m is None:
        return None
    return (float(spacing_m[0]) * scale, float(spacing_m[1]) * scale)
