"""Conversions between the archive's radiometric units and amplitude.

SAR backscatter in dB is always 10 log10 of an intensity (power). Stored values are one of:

- ``db``: 10 log10(intensity).
- ``linear`` with quantity ``intensity`` (e.g. calibrated sigma0) or ``amplitude`` (|SLC|).
- ``dn``: digital numbers of a detected product, proportional to amplitude (Sentinel-1 GRD DN,
  8-bit geocoded products).

Every function is pure numpy (works on numpy and dask arrays alike) and exactly invertible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sarray.errors import ConfigError
from sarray.archive.layout import QUANTITIES, UNITS


def _check(units: str, quantity: str) -> None:
    if units not in UNITS:
        raise ConfigError(f"`units` ({units!r}) must be one of {UNITS}")
    if quantity not in QUANTITIES:
        raise ConfigError(f"`quantity` ({quantity!r}) must be one of {QUANTITIES}")


def to_amplitude(values: Any, *, units: str, quantity: str) -> Any:
    """Convert stored values to amplitude (linear, sqrt of intensity).

    Args:
        values: array in archive units.
        units: ``dn``, ``linear`` or ``db``.
        quantity: ``amplitude``, ``intensity`` or ``unknown`` (unknown linear values and DN are
            taken as amplitude).
    """
    _check(units, quantity)
    if units == "db":
        return 10.0 ** (values / 20.0)
    if quantity == "intensity":
        return np.sqrt(values)
    return values


def from_amplitude(amplitude: Any, *, units: str, quantity: str) -> Any:
    """Inverse of :func:`to_amplitude`."""
    _check(units, quantity)
    if units == "db":
        return 20.0 * np.log10(amplitude)
    if quantity == "intensity":
        return amplitude * amplitude
    return amplitude


def to_db(values: Any, *, units: str, quantity: str) -> Any:
    """Convert stored values to dB of intensity (for quicklooks and metrics)."""
    _check(units, quantity)
    if units == "db":
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return 20.0 * np.log10(to_amplitude(values, units=units, quantity=quantity))


def multilook_intensity(intensity: np.ndarray, scale: int) -> np.ndarray:
    """Box average of intensity over ``scale`` x ``scale`` pixels, on the last two axes.

    This is sarray's documented multilook: the degradation from a fine grid to a grid
    ``scale`` times coarser. Edges that do not fill a whole box are dropped; NaN propagates.
    """
    if scale == 1:
        return intensity
    h, w = intensity.shape[-2] // scale, intensity.shape[-1] // scale
    x = intensity[..., : h * scale, : w * scale]
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    # Sums along x, then along y, one vectorised add per phase of the block (the consistency
    # step's hot path: ten times faster than a reduction over an axis of `scale` values, and
    # for scale < 8 the same additions in the same order, so the same bits).
    acc = x[..., 0::scale] + x[..., 1::scale]
    for k in range(2, scale):
        acc += x[..., k::scale]
    out = acc[..., 0::scale, :] + acc[..., 1::scale, :]
    for k in range(2, scale):
        out += acc[..., k::scale, :]
    return out / np.asarray(scale * scale, out.dtype)


def to_intensity(values: Any, *, units: str, quantity: str) -> Any:
    """Stored values to linear intensity (amplitude squared)."""
    a = to_amplitude(values, units=units, quantity=quantity)
    return a * a


def from_intensity(intensity: Any, *, units: str, quantity: str) -> Any:
    """Inverse of :func:`to_intensity`."""
    return from_amplitude(np.sqrt(intensity), units=units, quantity=quantity)


# The log-intensity domain (the consistency step's).
# Intensities below this are taken as this (a zero DN or a zero model output has no logarithm).
LOG_FLOOR = np.float32(np.log(1e-12))


def to_log_intensity(values: np.ndarray, *, units: str, quantity: str) -> np.ndarray:
    """ln(intensity) of values in archive units (float32; NaN stays NaN, negatives are NaN)."""
    v = np.asarray(values, dtype=np.float32)
    if units == "db":
        return v * np.float32(np.log(10.0) / 10.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.log(v)
    if quantity != "intensity":  # amplitude, DN, unknown linear: intensity = amplitude ** 2
        lg = lg * np.float32(2.0)
    return np.maximum(lg, LOG_FLOOR)  # log(0) = -inf -> the floor; NaN (and log(< 0)) stay NaN


def from_log_intensity(lg: np.ndarray, *, units: str, quantity: str) -> np.ndarray:
    """Inverse of :func:`to_log_intensity` (float32)."""
    if units == "db":
        return (lg * np.float32(10.0 / np.log(10.0))).astype(np.float32)
    if quantity != "intensity":
        return np.exp(lg * np.float32(0.5)).astype(np.float32)
    return np.exp(lg).astype(np.float32)
