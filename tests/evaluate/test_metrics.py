"""Metrics on known cases, baselines' sanity, and consistency to float precision."""

from __future__ import annotations

import numpy as np
import pytest

from sarray.archive.radiometry import multilook_intensity
from sarray.evaluate import baselines as bl
from sarray.evaluate import metrics as m
from sarray.stitch.consistency import apply_consistency


def _scene(seed: int = 0, shape=(128, 128), looks: int = 1):
    """Blocky reflectivity (16 px blocks) times unit-mean Gamma speckle; and its multilook x4."""
    rng = np.random.default_rng(seed)
    refl = np.kron(rng.uniform(0.1, 2.0, size=(shape[0] // 16, shape[1] // 16)), np.ones((16, 16)))
    fine = refl * rng.gamma(looks, 1.0 / looks, size=shape)
    return fine, multilook_intensity(fine, 4)


def test_identical_images_score_perfectly() -> None:
    fine, _ = _scene()
    db = m.to_db_floored(fine, 1e-6)
    assert m.psnr(db, db) == float("inf")
    assert m.ssim(db, db) == pytest.approx(1.0)
    assert m.spectrum_distance(db, db) == 0.0
    assert m.histogram_distance(db, db) == 0.0
    assert m.consistency_rms_db(fine, multilook_intensity(fine, 4), 4) == pytest.approx(0.0, abs=1e-12)


def test_histogram_distance_is_the_shift_and_psnr_ssim_drop_with_noise() -> None:
    fine, _ = _scene()
    db = m.to_db_floored(fine, 1e-6)
    assert m.histogram_distance(db + 1.5, db) == pytest.approx(1.5)
    noisy = db + np.random.default_rng(1).normal(0, 1.0, db.shape)
    noisier = db + np.random.default_rng(1).normal(0, 3.0, db.shape)
    assert m.psnr(noisier, db) < m.psnr(noisy, db) < 100
    assert m.ssim(noisier, db) < m.ssim(noisy, db) < 1.0
    assert m.psnr(noisier, db) - m.psnr(noisy, db) == pytest.approx(-20 * np.log10(3), abs=0.2)


def test_enl_of_pure_speckle_matches_its_looks() -> None:
    rng = np.random.default_rng(2)
    for looks in (1, 4):
        i = rng.gamma(looks, 1.0 / looks, size=(256, 256))
        mask = np.ones((16, 16), dtype=bool)
        enl, cv = m.speckle_statistics(i, mask, 16)
        assert enl == pytest.approx(looks, rel=0.15)
    # Single-look amplitude (Rayleigh) has CV sqrt(4/pi - 1) = 0.523.
    _, cv = m.speckle_statistics(rng.gamma(1, 1, size=(256, 256)), np.ones((16, 16), bool), 16)
    assert cv == pytest.approx(0.523, abs=0.02)


def test_homogeneous_windows_pick_the_uniform_ones() -> None:
    c = np.ones((16, 16))
    c[:8] = np.random.default_rng(3).gamma(1, 1, size=(8, 16))  # top half textured
    mask = m.homogeneous_windows(c, window=4, fraction=0.5)
    assert mask.shape == (4, 4)
    assert mask[2:].all() and not mask[:2].any()


def test_bicubic_baseline_numbers_are_sane() -> None:
    fine, coarse = _scene(seed=4)
    floor = 1e-4 * fine.mean()
    truth = m.to_db_floored(fine, floor)
    up = bl.bicubic(coarse, 4)
    lz = bl.lanczos(coarse, 4)
    assert up.shape == lz.shape == fine.shape and (up > 0).all()
    # Upsampling keeps the coarse means: nearly consistent (bicubic is not exactly mean-preserving).
    assert 0.05 < m.consistency_rms_db(up, coarse, 4) < 1.0
    p, s = m.psnr(m.to_db_floored(up, floor), truth), m.ssim(m.to_db_floored(up, floor), truth)
    assert 10 < p < 30 and 0.0 < s < 0.6
    # Smooth: far fewer speckle fluctuations than the single-look truth (ENL much higher).
    mask = m.homogeneous_windows(coarse, window=4)
    enl_up, _ = m.speckle_statistics(up, mask, 16)
    enl_truth, _ = m.speckle_statistics(fine, mask, 16)
    assert enl_truth == pytest.approx(1.0, rel=0.3)
    assert enl_up > 5 * enl_truth


def test_speckle_baseline_matches_the_histogram_better_than_bicubic() -> None:
    train_fine, train_coarse = _scene(seed=5)
    parent = np.repeat(np.repeat(train_coarse, 4, 0), 4, 1)
    q = np.quantile(train_fine / parent, np.linspace(0, 1, 2001))
    ratios = bl.RatioDistribution(quantiles=tuple(q), samples=train_fine.size)
    assert ratios.mean == pytest.approx(1.0, abs=0.02)
    fine, coarse = _scene(seed=6)
    floor = 1e-4 * fine.mean()
    truth = m.to_db_floored(fine, floor)
    sp = bl.speckle_baseline(coarse, 4, ratios, np.random.default_rng(0))
    up = bl.bicubic(coarse, 4)
    assert m.histogram_distance(m.to_db_floored(sp, floor), truth) < \
        0.5 * m.histogram_distance(m.to_db_floored(up, floor), truth)
    assert m.spectrum_distance(m.to_db_floored(sp, floor), truth) < \
        m.spectrum_distance(m.to_db_floored(up, floor), truth)
    with pytest.raises(ValueError):
        bl.RatioDistribution(quantiles=(2.0, 1.0), samples=2)


@pytest.mark.parametrize("units,quantity", [("linear", "amplitude"), ("db", "intensity"),
                                            ("linear", "intensity")])
def test_consistency_step_makes_the_multilook_reproduce_the_input(units, quantity) -> None:
    from sarray.archive.radiometry import from_intensity, to_intensity

    fine, coarse = _scene(seed=7)
    # Any fine output (here: an unrelated speckled image) is rescaled onto the input.
    other, _ = _scene(seed=8)
    source = from_intensity(coarse[None], units=units, quantity=quantity).astype(np.float32)
    output = from_intensity(other[None], units=units, quantity=quantity).astype(np.float32)
    fixed = apply_consistency(output, source, scale=4, units=units, quantity=quantity)
    i_fixed = to_intensity(fixed.astype(np.float64), units=units, quantity=quantity)[0]
    i_src = to_intensity(source.astype(np.float64), units=units, quantity=quantity)[0]
    assert m.consistency_rms_db(i_fixed, i_src, 4) < 0.05
    assert m.consistency_rms_db(to_intensity(output.astype(np.float64), units=units,
                                             quantity=quantity)[0], i_src, 4) > 1.0


def test_block_edge_ratio_sees_a_per_block_gain_and_not_speckle() -> None:
    rng = np.random.default_rng(3)
    speckle = rng.gamma(4.0, 0.25, (128, 128))
    assert abs(m.block_edge_ratio(speckle, 4) - 1) < 0.05
    gain = np.kron(np.exp(rng.normal(0, 0.7, (32, 32))), np.ones((4, 4)))
    assert m.block_edge_ratio(speckle * gain, 4) > 1.3


def test_periodic_peaks_find_a_dot_grid() -> None:
    rng = np.random.default_rng(4)
    img = rng.exponential(1.0, (128, 128))
    clean = m.periodic_peaks_db(10 * np.log10(img))
    dots = img.copy()
    dots[::4, ::4] = 1e-8  # the decoder's dark dots, every 4 px
    peaks = m.periodic_peaks_db(10 * np.log10(dots))
    assert all(abs(v) < 6 for v in clean.values())
    assert peaks["peak_4px_db"] > 10 and peaks["peak_4px_db"] > clean["peak_4px_db"] + 10


def test_consistency_counts_a_zeroed_block_under_a_lit_input() -> None:
    rng = np.random.default_rng(6)
    fine = rng.exponential(1.0, (64, 64))
    coarse = multilook_intensity(fine, 4)
    assert m.consistency_rms_db(fine, coarse, 4) < 1e-9
    fine[:4, :4] = 0.0  # one of 256 blocks written as zeros over a positive input pixel
    rms = m.consistency_rms_db(fine, coarse, 4)
    assert rms == pytest.approx(np.sqrt(m.ZERO_BLOCK_DB**2 / 256), rel=1e-6)
    coarse[0, 0] = 0.0  # an input that records 0 there: nothing to reproduce
    assert m.consistency_rms_db(fine, coarse, 4) < 1e-9


def test_floor_share_and_lag1() -> None:
    rng = np.random.default_rng(5)
    img = rng.exponential(1.0, (100, 100))
    assert m.floor_share(img) < 0.001
    img[:, :3] = 1e-8  # 3% clamped at -80 dB
    assert abs(m.floor_share(img) - 0.03) < 0.001
    # On an integer DN product exact zeros are the product's recorded floor, not a clamp; a
    # clamp above it still counts.
    img[:, 3:8] = 0.0
    assert abs(m.floor_share(img) - 0.08) < 0.001
    assert abs(m.floor_share(img, zero_is_recorded=True) - 0.03) < 0.001
    white = rng.exponential(1.0, (200, 200))
    assert abs(m.lag1_autocorrelation(white)) < 0.03
    from scipy.ndimage import uniform_filter

    assert m.lag1_autocorrelation(uniform_filter(white, 3)) > 0.5
