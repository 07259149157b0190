"""Radiometric consistency: make the fine output multilook back exactly onto the coarse input.

For each input pixel, the ``scale`` x ``scale`` output pixels above it are multiplied (in
intensity) by ``I_in / mean(I_out)``: the multilook of the result then equals the input to float
precision, so the synthetic fine scene keeps the satellite's calibration while its texture (the
ratios between the fine pixels) is the model's.
"""

from __future__ import annotations

import numpy as np

from sarray.archive.radiometry import from_intensity, multilook_intensity, to_intensity


def apply_consistency(
    output: np.ndarray, source: np.ndarray, *, scale: int, units: str, quantity: str
) -> np.ndarray:
    """Rescale ``output`` (P, h*scale, w*scale) so that it multilooks to ``source`` (P, h, w).

    Both are in archive units. Input pixels that are NaN, or whose output box has zero
    intensity, are left as they are (NaN stays NaN).
    """
    if output.shape[-2:] != (source.shape[-2] * scale, source.shape[-1] * scale):
        raise ValueError(
            f"`output` shape {output.shape} is not `source` shape {source.shape} times {scale}"
        )
    i_out = to_intensity(output.astype(np.float64), units=units, quantity=quantity)
    i_in = to_intensity(source.astype(np.float64), units=units, quantity=quantity)
    looked = multilook_intensity(i_out, scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where((looked > 0) & np.isfinite(i_in), i_in / looked, 1.0)
    gain = np.repeat(np.repeat(gain, scale, axis=-2), scale, axis=-1)
    fixed = from_intensity(i_out * gain, units=units, quantity=quantity)
    return np.where(np.isfinite(output), fixed, output).astype(output.dtype)
