"""SAR <-> model space: exact values, round trips, channel mapping, statistics."""

from __future__ import annotations

import numpy as np
import pytest

from sarray.errors import ConfigError
from sarray.models import normalise as norm

CASES = [  # (units, quantity)
    ("dn", "amplitude"), ("linear", "amplitude"), ("linear", "intensity"), ("db", "intensity"),
]


def _scene(units: str, quantity: str, pols=("VV", "VH"), seed=0):
    rng = np.random.default_rng(seed)
    amp = rng.rayleigh(1.0, size=(len(pols), 32, 32)) * np.array([1.0, 0.3][: len(pols)])[:, None, None]
    if units == "db":
        v = 20 * np.log10(amp)
    elif quantity == "intensity":
        v = amp**2
    else:
        v = amp * 0.5
    stats = norm.compute_statistics(v, units=units, quantity=quantity, polarisations=pols)
    return v, stats


@pytest.mark.parametrize("method", norm.NORMALISATION_METHODS)
@pytest.mark.parametrize("units,quantity", CASES)
def test_round_trip_is_exact_on_unclipped_range(method, units, quantity):
    v, stats = _scene(units, quantity)
    cfg = norm.NormalisationConfig(method=method)
    kw = dict(config=cfg, units=units, quantity=quantity, polarisations=("VV", "VH"), statistics=stats)
    x = norm.normalise(v, clip=False, **kw)
    back = norm.denormalise(x, **kw)
    np.testing.assert_allclose(back, v, rtol=1e-12, atol=1e-12)
    # Inside [0, 1] clipping changes nothing, so the clipped map inverts there too.
    xc = norm.normalise(v, clip=True, **kw)
    inside = (x >= 0) & (x <= 1)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(norm.denormalise(xc, **kw)[inside], v[inside], rtol=1e-12, atol=1e-12)
    assert xc.min() >= 0 and xc.max() <= 1


def test_amplitude_method_is_a_over_mu_plus_3_sigma():
    v = np.array([[[1.0, 2.0], [4.0, 9.0]]])  # intensity
    stats = {"VV": {"amplitude_mean": 1.5, "amplitude_std": 0.5}}
    x = norm.normalise(
        v, config=norm.NormalisationConfig(), units="linear", quantity="intensity",
        polarisations=["VV"], statistics=stats, clip=True,
    )
    np.testing.assert_allclose(x, np.array([[[1 / 3, np.sqrt(2) / 3], [2 / 3, 1.0]]]))


def test_db_window_and_nan():
    v = np.array([[[-30.0, 5.0], [-12.5, np.nan]]])
    x = norm.normalise(
        v, config=norm.NormalisationConfig(method="db"), units="db", quantity="intensity",
        polarisations=["VV"], statistics=None,
    )
    np.testing.assert_allclose(x[0, 0], [0.0, 1.0])
    assert x[0, 1, 0] == pytest.approx(0.5)
    assert np.isnan(x[0, 1, 1])


def test_zero_amplitude_maps_to_zero_and_back_to_minus_inf_db():
    stats = {"VV": {"amplitude_mean": 1.0, "amplitude_std": 0.0}}
    kw = dict(config=norm.NormalisationConfig(), units="db", quantity="intensity",
              polarisations=["VV"], statistics=stats)
    x = norm.normalise(np.array([[[-np.inf, 0.0]]]), **kw)
    np.testing.assert_array_equal(x, [[[0.0, 1.0]]])
    assert norm.denormalise(x, **kw)[0, 0, 0] == -np.inf


def test_missing_statistics_is_a_clear_error():
    with pytest.raises(ConfigError, match="amplitude_mean.*'VH'.*compute_statistics"):
        norm.normalise(
            np.ones((2, 4, 4)), config=norm.NormalisationConfig(), units="linear",
            quantity="amplitude", polarisations=["VV", "VH"],
            statistics={"VV": {"amplitude_mean": 1.0, "amplitude_std": 0.1}},
        )
    with pytest.raises(ConfigError, match="db_std"):
        norm.window(norm.NormalisationConfig(method="db_stats"), "VV", {"VV": {"db_mean": -10.0}})


def test_config_validation_and_dict_round_trip():
    cfg = norm.NormalisationConfig(method="db_stats", k_sigma=2.0)
    assert norm.NormalisationConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="`method`"):
        norm.NormalisationConfig(method="minmax")
    with pytest.raises(ConfigError, match="`k_sigma`"):
        norm.NormalisationConfig(k_sigma=0)
    with pytest.raises(ConfigError, match="`db_min`"):
        norm.NormalisationConfig(db_min=5, db_max=-5)


def test_channel_mapping_single_and_dual_pol():
    rng = np.random.default_rng(1)
    one = rng.uniform(size=(1, 4, 4))
    rgb = norm.to_rgb(one, ["HH"])
    np.testing.assert_array_equal(rgb, np.concatenate([one] * 3))
    np.testing.assert_allclose(norm.from_rgb(rgb, ["HH"]), one, rtol=1e-15)

    vv, vh = rng.uniform(size=(2, 1, 4, 4))
    rgb = norm.to_rgb(np.concatenate([vv, vh]), ["VV", "VH"])
    np.testing.assert_array_equal(rgb[0], vv[0])
    np.testing.assert_array_equal(rgb[1], vh[0])
    np.testing.assert_array_equal(rgb[2], (vv[0] + vh[0]) / 2)
    # Given as (cross, co): co-pol still goes to red, and comes back in the given order.
    rgb2 = norm.to_rgb(np.concatenate([vh, vv]), ["VH", "VV"])
    np.testing.assert_array_equal(rgb2, rgb)
    np.testing.assert_array_equal(norm.from_rgb(rgb2, ["VH", "VV"]), np.concatenate([vh, vv]))
    with pytest.raises(ConfigError, match="one or two"):
        norm.channel_order(["HH", "HV", "VV"])


def test_compute_statistics_layout():
    v, stats = _scene("db", "intensity")
    v[0, 0, :8] = np.nan
    stats = norm.compute_statistics(v, units="db", quantity="intensity", polarisations=["VV", "VH"])
    assert set(stats) == {"VV", "VH"}
    assert set(stats["VV"]) == set(norm.STAT_KEYS)
    assert stats["VV"]["valid_fraction"] == pytest.approx(1 - 8 / 1024)
    assert stats["VV"]["db_mean"] == pytest.approx(stats["VV"]["mean"])
    amp = 10 ** (v[1] / 20)
    assert stats["VH"]["amplitude_mean"] == pytest.approx(amp.mean())
    with pytest.raises(ConfigError, match="polarisations"):
        norm.compute_statistics(v, units="db", quantity="intensity", polarisations=["VV"])
