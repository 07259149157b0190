"""Multilooking the consistency-corrected output reproduces the input to float precision."""

from __future__ import annotations

import numpy as np
import pytest

from sarray.archive.radiometry import multilook_intensity, to_intensity
from sarray.stitch.consistency import apply_consistency


@pytest.mark.parametrize(("units", "quantity"), [("linear", "intensity"), ("db", "intensity"),
                                                 ("dn", "amplitude"), ("linear", "amplitude")])
def test_multilook_of_corrected_output_equals_input(units: str, quantity: str) -> None:
    rng = np.random.default_rng(0)
    src_i = rng.gamma(4.0, 0.05, (2, 16, 24))
    out_i = rng.gamma(1.0, 0.07, (2, 64, 96))
    conv = {"db": lambda i: 10 * np.log10(i), "intensity": lambda i: i, "amplitude": np.sqrt}
    f = conv["db"] if units == "db" else conv[quantity]
    src, out = f(src_i).astype(np.float32), f(out_i).astype(np.float32)
    src[0, 3, 4] = np.nan
    fixed = apply_consistency(out, src, scale=4, units=units, quantity=quantity)
    looked = multilook_intensity(to_intensity(fixed.astype(np.float64), units=units, quantity=quantity), 4)
    want = to_intensity(src.astype(np.float64), units=units, quantity=quantity)
    ok = np.isfinite(want)
    np.testing.assert_allclose(looked[ok], want[ok], rtol=2e-6)
    # Texture is kept: ratios between fine pixels in one box are unchanged.
    box = to_intensity(fixed[1, :4, :4].astype(np.float64), units=units, quantity=quantity)
    orig = to_intensity(out[1, :4, :4].astype(np.float64), units=units, quantity=quantity)
    np.testing.assert_allclose(box / box.sum(), orig / orig.sum(), rtol=2e-6)


def test_multilook_is_the_box_average() -> None:
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    np.testing.assert_array_equal(multilook_intensity(x, 2), [[[2.5, 4.5], [10.5, 12.5]]])
