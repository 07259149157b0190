"""The smooth consistency step: the multilook of the output reproduces the input, in every unit,
without stamping the input grid onto the output, and chunk by chunk with a halo as on the whole."""

from __future__ import annotations

import numpy as np
import pytest

from sarray.archive.radiometry import multilook_intensity, to_db, to_intensity
from sarray.evaluate.metrics import consistency_rms_db as rms_db
from sarray.stitch.consistency import HALO_INPUT_PX, apply_consistency

UNITS = [("linear", "intensity"), ("db", "intensity"), ("dn", "amplitude"), ("linear", "amplitude")]
CONV = {"db": lambda i: 10 * np.log10(i), "intensity": lambda i: i, "amplitude": np.sqrt}


def _scene(units: str, quantity: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A coarse input and a 'model output' x4 that is 3 dB too bright and compresses contrast."""
    rng = np.random.default_rng(seed)
    src_i = rng.gamma(4.0, 0.05, (2, 16, 24)) * np.exp(rng.normal(0, 1.0, (2, 16, 24)))
    up = np.repeat(np.repeat(src_i, 4, axis=1), 4, axis=2)
    out_i = 2.0 * up**0.6 * rng.gamma(1.0, 1.0, up.shape)
    f = CONV["db"] if units == "db" else CONV[quantity]
    return f(src_i).astype(np.float32), f(out_i).astype(np.float32)


@pytest.mark.parametrize(("units", "quantity"), UNITS)
def test_multilook_of_corrected_output_reproduces_the_input(units: str, quantity: str) -> None:
    src, out = _scene(units, quantity)
    src[0, 3, 4] = np.nan

    def consistency_rms_db(values: np.ndarray) -> float:
        i = to_intensity(values.astype(np.float64), units=units, quantity=quantity)
        return rms_db(i, to_intensity(src.astype(np.float64), units=units, quantity=quantity), 4)

    assert consistency_rms_db(out) > 1.0
    fixed = apply_consistency(out, src, scale=4, units=units, quantity=quantity)
    assert fixed.dtype == out.dtype and np.isfinite(fixed).all()
    assert consistency_rms_db(fixed) < 0.05
    looked = multilook_intensity(to_intensity(fixed.astype(np.float64), units=units, quantity=quantity), 4)
    want = to_intensity(src.astype(np.float64), units=units, quantity=quantity)
    ok = np.isfinite(want)
    assert np.abs(10 * np.log10(looked[ok] / want[ok])).max() < 0.5


def test_the_correction_is_smooth_across_the_input_grid() -> None:
    """The gain (output over model, in dB) changes across block edges as it does inside them:
    no blocks. A per-block gain would change only across them."""
    src, out = _scene("linear", "intensity", seed=1)
    fixed = apply_consistency(out, src, scale=4, units="linear", quantity="intensity")
    gain = to_db(fixed, units="linear", quantity="intensity") - to_db(out, units="linear", quantity="intensity")
    d = np.abs(np.diff(gain, axis=2))
    across, inside = d[:, :, 3::4].mean(), np.delete(d, np.s_[3::4], axis=2).mean()
    assert across / inside < 1.5


def test_chunks_corrected_with_a_halo_agree_with_the_whole() -> None:
    """Two halves, each corrected with HALO_INPUT_PX input pixels of context, match the whole
    scene's correction far below the speckle (a tenth of a dB at most; each stops iterating at
    its own convergence) up to their shared border."""
    rng = np.random.default_rng(2)
    src_i = rng.gamma(4.0, 0.05, (1, 24, 48)) * np.exp(rng.normal(0, 1.0, (1, 24, 48)))
    out_i = np.repeat(np.repeat(src_i, 4, axis=1), 4, axis=2) ** 0.7 * rng.gamma(1.0, 1.0, (1, 96, 192))
    src, out = src_i.astype(np.float32), out_i.astype(np.float32)
    kw = dict(scale=4, units="linear", quantity="intensity")
    whole = apply_consistency(out, src, **kw)
    h = HALO_INPUT_PX
    left = apply_consistency(out[:, :, : (24 + h) * 4], src[:, :, : 24 + h], **kw)[:, :, : 24 * 4]
    right = apply_consistency(out[:, :, (24 - h) * 4 :], src[:, :, 24 - h :], **kw)[:, :, h * 4 :]
    stitched = np.concatenate([left, right], axis=2)
    err = np.abs(10 * np.log10(stitched / whole))
    assert err.max() < 0.1 and err.mean() < 0.01


def test_multilook_is_the_box_average() -> None:
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    np.testing.assert_array_equal(multilook_intensity(x, 2), [[[2.5, 4.5], [10.5, 12.5]]])


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("shape", [(2, 9, 13), (1, 1, 5), (1, 3, 1)])
def test_spread_is_bilinear_with_edge_values_beyond_the_outer_centres(scale: int, shape) -> None:
    """The phase-sliced spread equals bilinear interpolation by gathers (fine pixel centres
    mapped to coarse coordinates, clamped at the outer centres)."""
    from sarray.stitch.consistency import spread

    g = np.random.default_rng(0).normal(size=shape).astype(np.float32)

    def axis_weights(n: int) -> np.ndarray:
        u = np.clip((np.arange(n * scale) + 0.5) / scale - 0.5, 0, n - 1)
        lo = np.floor(u).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        w = np.zeros((n * scale, n))
        np.add.at(w, (np.arange(n * scale), lo), 1 - (u - lo))
        np.add.at(w, (np.arange(n * scale), hi), u - lo)
        return w

    want = np.einsum("ya,pab,xb->pyx", axis_weights(shape[1]), g.astype(np.float64), axis_weights(shape[2]))
    got = spread(g, scale)
    assert got.shape == (shape[0], shape[1] * scale, shape[2] * scale) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_zero_dn_input_is_matched_as_the_mean_of_its_quantisation_cell() -> None:
    """An 8-bit amplitude input of 0 DN (any amplitude below half a DN) is a target of 1/12 DN^2,
    not a pixel without one: a model that paints it bright is corrected down to it."""
    from sarray.stitch.consistency import DN_ZERO_INTENSITY

    rng = np.random.default_rng(2)
    src = np.round(rng.uniform(0, 20, (1, 8, 8))).astype(np.float32)
    src[0, 2:5, 3:6] = 0.0
    out = np.sqrt(rng.gamma(1.0, 50.0, (1, 32, 32))).astype(np.float32)  # far too bright
    fixed = apply_consistency(out, src, scale=4, units="dn", quantity="amplitude")
    looked = multilook_intensity(fixed.astype(np.float64) ** 2, 4)
    np.testing.assert_allclose(looked[0, 2:5, 3:6], DN_ZERO_INTENSITY["amplitude"], rtol=0.05)
    nz = src > 0
    np.testing.assert_allclose(looked[nz], src[nz].astype(np.float64) ** 2, rtol=0.05)
