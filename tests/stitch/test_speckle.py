"""Speckle from physics: unit-mean multipliers with the sensor's statistics, one seamless field
per scene and seed, statistics estimated back from speckled images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sarray.errors import ConfigError
from sarray.stitch.speckle import (
    SPECKLE_FILE,
    SpeckleModel,
    _lag1,
    apply_speckle,
    estimate_speckle,
    load_speckle,
    multiplier,
    single_look,
)


def test_single_look_speckle_is_exponential() -> None:
    n = multiplier(single_look(), (0, 256, 0, 256), 2, seed=0, scene="s")
    assert n.shape == (2, 256, 256) and (n > 0).all()
    assert abs(n.mean() - 1) < 0.02 and abs(n.var() - 1) < 0.08  # exponential: var = mean^2
    assert abs(_lag1(n[0], np.ones(n.shape[1:], bool))) < 0.02


def test_the_field_is_one_field_per_scene_and_seed() -> None:
    m = single_look()
    whole = multiplier(m, (0, 300, 0, 400), 1, seed=3, scene="a")
    for r in [(0, 128, 0, 128), (17, 230, 101, 399), (128, 129, 255, 257)]:
        np.testing.assert_array_equal(multiplier(m, r, 1, seed=3, scene="a"),
                                      whole[:, r[0] : r[1], r[2] : r[3]])
    assert not np.array_equal(multiplier(m, (0, 64, 0, 64), 1, seed=4, scene="a"), whole[:, :64, :64])
    assert not np.array_equal(multiplier(m, (0, 64, 0, 64), 1, seed=3, scene="b"), whole[:, :64, :64])


def _correlated_speckle(shape, looks: float, sigma: float, seed: int) -> np.ndarray:
    """Gamma speckle of ``looks`` looks, spatially correlated by a Gaussian impulse response."""
    from scipy.ndimage import gaussian_filter
    from scipy.special import gammaincinv, ndtr

    rng = np.random.default_rng(seed)
    z = gaussian_filter(rng.standard_normal(shape), sigma)
    z /= z.std()
    return gammaincinv(looks, ndtr(z)) / looks


def test_estimated_statistics_reproduce_looks_correlation_and_tail() -> None:
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    refl = np.exp(gaussian_filter(rng.normal(0, 1, (384, 384)), 12) * 6)
    truth = refl * _correlated_speckle(refl.shape, looks=1.5, sigma=0.8, seed=1)
    est = estimate_speckle([truth], source="synthetic test")
    # ENL of n = I / (local mean over 5 px): a little above the speckle's 1.5 looks, since a
    # correlated speckle is partly followed by its local mean.
    assert 1.2 < est.looks < 3.0
    assert est.sigma_px > 0.2 and est.lag1 > 0.1
    n = multiplier(est, (0, 256, 0, 256), 1, seed=0, scene="x")[0]
    assert abs(n.mean() - 1) < 0.03
    assert abs(_lag1(n, np.ones(n.shape, bool)) - est.lag1) < 0.06
    # The sampled multiplier has the measured ratio's median and bright tail (above the median
    # the table is the measured distribution).
    from sarray.stitch.speckle import _ratio

    ratio, _, _ = _ratio(truth)
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    for q in (0.5, 0.9, 0.99):
        assert abs(np.quantile(n, q) / np.quantile(ratio, q) - 1) < 0.1, q


def test_statistics_round_trip_and_load_by_name(tmp_path: Path) -> None:
    m = single_look()
    again = SpeckleModel.from_dict(json.loads(json.dumps(m.to_dict())))
    np.testing.assert_allclose(again.log_table, m.log_table, atol=1e-6)
    assert load_speckle(None) == single_look() and load_speckle(tmp_path) == single_look()
    with pytest.raises(ConfigError, match="stores no speckle statistics"):
        load_speckle(tmp_path, "Umbra-04")
    other = SpeckleModel(**{**m.__dict__, "looks": 3.0, "source": "other"})
    doc = {"default": "pooled", "sets": {"pooled": m.to_dict(), "Umbra-04": other.to_dict()}}
    (tmp_path / SPECKLE_FILE).write_text(json.dumps(doc))
    assert load_speckle(tmp_path).looks == m.looks
    assert load_speckle(tmp_path, "Umbra-04").looks == 3.0
    with pytest.raises(ConfigError, match=r"'ERS'\) is not stored with the model; it has"):
        load_speckle(tmp_path, "ERS")
    (tmp_path / SPECKLE_FILE).write_text('{"looks": 1}')
    with pytest.raises(ConfigError, match="speckle statistics .* unreadable"):
        load_speckle(tmp_path)


def test_looks_come_from_above_the_median_whatever_lies_below_it() -> None:
    """8-bit zeros (a censored lower tail) do not move the looks."""
    from sarray.stitch.speckle import _looks_from_quantiles

    rng = np.random.default_rng(9)
    n = rng.gamma(2.0, 0.5, 400_000)
    assert abs(_looks_from_quantiles(n) - 2.0) < 0.1
    clipped = np.where(n < np.quantile(n, 0.2), 0.0, n)
    assert abs(_looks_from_quantiles(clipped / clipped.mean()) - 2.0) < 0.1


@pytest.mark.parametrize(("units", "quantity"), [("db", "intensity"), ("linear", "intensity"),
                                                 ("linear", "amplitude"), ("dn", "amplitude")])
def test_speckle_keeps_no_data_and_positivity(units: str, quantity: str) -> None:
    from sarray.archive.radiometry import from_intensity, to_intensity

    refl = from_intensity(np.full((1, 64, 64), 0.2), units=units, quantity=quantity).astype(np.float32)
    refl[0, :4] = np.nan
    out = apply_speckle(refl, (0, 64, 0, 64), single_look(), seed=0, scene="s", units=units,
                        quantity=quantity)
    assert np.isnan(out[0, :4]).all() and np.isfinite(out[0, 4:]).all()
    i = to_intensity(out[0, 4:].astype(np.float64), units=units, quantity=quantity)
    assert (i > 0).all() and abs(i.mean() / 0.2 - 1) < 0.1


def test_integer_products_are_measured_where_the_quantiser_does_not_clip() -> None:
    """An 8-bit product of dark speckle is a quarter zeros: measured only where the local mean is
    several quantisation steps, the table's lower tail is the speckle's (single look here), not
    an atom of zeros, and the estimate matches the unquantised image's."""
    from scipy.ndimage import gaussian_filter
    from scipy.special import ndtr

    from sarray.stitch.speckle import Z_GRID

    rng = np.random.default_rng(4)
    # Reflectivity from dark (below 0.5 DN: mostly zeros once rounded) to bright (tens of DN).
    field = gaussian_filter(rng.normal(0, 1, (512, 512)), 16)
    refl = np.exp(field / field.std() * 3.0) * 5.0
    speckle = rng.exponential(1.0, refl.shape)
    truth = refl * speckle
    dn = np.round(np.sqrt(truth)) ** 2
    assert (dn == 0).mean() > 0.15
    est_q = estimate_speckle([dn], source="8-bit", quanta=[1.0])
    est_f = estimate_speckle([truth], source="float")
    p10 = int(np.searchsorted(ndtr(Z_GRID), 0.1))
    db = 10 / np.log(10)
    # The lower tail measured on the 8-bit image follows the float image's, within 0.5 dB at
    # the 10th percentile (single-look speckle: -9.8 dB).
    assert abs(est_q.log_table[p10] - est_f.log_table[p10]) * db < 0.5
    assert abs(est_q.looks - 1) < 0.1
    # Ignoring the quantiser lets the zeros drop out of the table: its lower tail is cut short.
    naive = estimate_speckle([dn], source="8-bit, no quantum")
    assert (naive.log_table[p10] - est_q.log_table[p10]) * db > 0.5


def _db_scaled_product(seed: int, shape=(512, 512), dn_per_db: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit product recorded as the Umbra GEC is: DN = 6 x dB of single-look intensity
    (offset so that dark areas clip at 0 DN), rounded; returns its intensity (DN^2) and the
    reflectivity the model would be trained on (local mean of DN^2 over 5 px)."""
    from scipy.ndimage import gaussian_filter

    from sarray.stitch.speckle import _ratio

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(0, 1, shape), 16)
    refl_db = field / field.std() * 6.0  # dark (clipped) to bright areas
    phys_db = refl_db + 10 * np.log10(rng.exponential(1.0, shape))
    dn = np.clip(np.round(dn_per_db * (phys_db + 8.0)), 0, 255)
    intensity = dn**2
    return intensity, np.maximum(np.nan_to_num(_ratio(intensity)[2]), 0.0)


def test_a_db_scaled_8bit_product_is_measured_per_level_and_reproduced() -> None:
    """A product whose DN are dB (additive speckle, a clipping floor) is not a reflectivity
    times one multiplier: its statistics are measured per level, and sampled at the level of
    the reflectivity they reproduce its zeros (by level) and its histogram, which one table
    cannot."""
    from sarray.stitch.speckle import _ratio

    train, _ = _db_scaled_product(1)
    est = estimate_speckle([train], source="dB-scaled 8-bit", quanta=[1.0], by_level=True)
    one = estimate_speckle([train], source="dB-scaled 8-bit", quanta=[1.0])
    assert len(est.levels) >= 8 and not one.levels
    assert est.zero_shares[0] > 0.3 and est.zero_shares[-1] < 0.05
    assert np.all(np.diff(est.zero_shares) <= 0.02)  # fewer zeros the brighter
    # A held-out image of the same product, synthesised from its own reflectivity.
    truth, refl = _db_scaled_product(2)
    amp = np.sqrt(refl)[None].astype(np.float32)
    kw = dict(seed=0, scene="h", units="dn", quantity="amplitude")
    by_level = apply_speckle(amp, (0, 512, 0, 512), est, **kw)[0].astype(np.float64) ** 2
    single = apply_speckle(amp, (0, 512, 0, 512), one, **kw)[0].astype(np.float64) ** 2
    assert abs((by_level == 0).mean() - (truth == 0).mean()) < 0.03
    assert (single == 0).mean() < 0.01 < 0.15 < (truth == 0).mean()
    # Zeros by level follow the truth's: dark areas a third or more, bright ones a few percent.
    dark, bright = refl < np.quantile(refl, 0.2), refl > np.quantile(refl, 0.8)
    for area in (dark, bright):
        assert abs((by_level[area] == 0).mean() - (truth[area] == 0).mean()) < 0.05
    # The histogram of DN: per level within a few DN of the truth, one table much further.
    q = np.linspace(0.01, 0.99, 99)

    def w1(a: np.ndarray) -> float:
        return float(np.mean(np.abs(np.quantile(np.sqrt(a), q) - np.quantile(np.sqrt(truth), q))))

    assert w1(by_level) < 0.5 * w1(single)
    # Still unit mean at every level: the local mean of the output follows the reflectivity.
    n_out = _ratio(by_level)[0]
    assert abs(np.nanmean(by_level) / np.nanmean(refl) - 1) < 0.05 and np.isfinite(n_out).mean() > 0.9


def test_a_linear_8bit_product_keeps_one_table() -> None:
    """Rounded single-look amplitude (a recording linear in amplitude): the per-level
    statistics agree, so one table is kept."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(5)
    field = gaussian_filter(rng.normal(0, 1, (512, 512)), 16)
    refl = np.exp(field / field.std()) * 400.0  # tens of DN: the quantiser clips almost nothing
    dn = np.round(np.sqrt(refl * rng.exponential(1.0, refl.shape))) ** 2
    est = estimate_speckle([dn], source="linear 8-bit", quanta=[1.0], by_level=True)
    assert not est.levels


def test_recorded_zeros_are_exact_and_the_consistency_step_still_holds() -> None:
    """Pixels a per-level model records as 0 are written as exactly 0 DN, and the output still
    multilooks onto its input within 0.1 dB."""
    from sarray.archive.radiometry import multilook_intensity
    from sarray.stitch.speckle import synthesise

    train, _ = _db_scaled_product(3)
    est = estimate_speckle([train], source="dB-scaled 8-bit", quanta=[1.0], by_level=True)
    truth, refl = _db_scaled_product(4, shape=(256, 256))
    source = np.sqrt(multilook_intensity(truth[None], 4)).astype(np.float32)
    refl_amp = np.sqrt(refl)[None].astype(np.float32)
    refl_amp[0, :8, :16] = np.nan  # no data stays no data, never a recorded 0
    out = synthesise(refl_amp, (0, 256, 0, 256), scale=4, units="dn",
                     quantity="amplitude", speckle=est, seed=0, scene="c", source=source)
    assert np.isnan(out[0, :8, :16]).all() and np.isfinite(out[0, 8:]).all()
    zeros = (out[0, 8:] == 0).mean()
    assert 0.05 < zeros < 0.5
    looked = multilook_intensity(out.astype(np.float64) ** 2, 4)
    ok = (source > 0) & np.isfinite(looked)
    rms = np.sqrt(np.mean((10 * np.log10(looked[ok] / source[ok].astype(np.float64) ** 2)) ** 2))
    assert rms < 0.1


def test_per_level_statistics_round_trip_and_are_checked() -> None:
    train, _ = _db_scaled_product(6, shape=(256, 256))
    est = estimate_speckle([train], source="x", quanta=[1.0], by_level=True)
    again = SpeckleModel.from_dict(json.loads(json.dumps(est.to_dict())))
    assert again.levels == pytest.approx(est.levels, abs=1e-6)
    np.testing.assert_allclose(np.array(again.level_tables), np.array(est.level_tables), atol=1e-4)
    assert "levels" in again.summary()
    with pytest.raises(ConfigError, match="one entry per level"):
        SpeckleModel(**{**est.__dict__, "zero_shares": est.zero_shares[:-1]})
    with pytest.raises(ConfigError, match="must ascend"):
        SpeckleModel(**{**est.__dict__, "levels": tuple(reversed(est.levels))})


def test_auto_takes_the_scenes_own_sensor_set(tmp_path: Path) -> None:
    from sarray.stitch.speckle import speckle_name

    m = single_look()
    other = SpeckleModel(**{**m.__dict__, "looks": 3.0, "source": "umbra"})
    doc = {"default": "pooled", "sets": {"pooled": m.to_dict(), "Umbra-04": other.to_dict()}}
    (tmp_path / SPECKLE_FILE).write_text(json.dumps(doc))
    assert speckle_name(tmp_path, None, "Umbra-04") == "Umbra-04"
    assert speckle_name(tmp_path, "auto", "Umbra-04") == "Umbra-04"
    assert speckle_name(tmp_path, None, "Sentinel-1A") is None
    assert speckle_name(tmp_path, "pooled", "Umbra-04") == "pooled"
    assert load_speckle(tmp_path, sensor="Umbra-04").looks == 3.0
    assert load_speckle(tmp_path, "auto", sensor="ERS").looks == m.looks
    assert load_speckle(None, "auto") == single_look()
