"""The degradation model and the pair generator: shapes, spacing, exactness, split by scene."""

from __future__ import annotations

import numpy as np
import pytest

from sarray.archive.radiometry import multilook_intensity
from sarray.errors import ConfigError
from sarray.train.degrade import DegradationConfig, degrade, degrade_intensity
from sarray.train.pairs import PairConfig, PairSampler, is_validation_scene, to_model_space


def test_multilook_degradation_is_the_documented_box_average() -> None:
    rng = np.random.default_rng(0)
    i = rng.gamma(1.0, 1.0, size=(2, 32, 48))
    cfg = DegradationConfig(scale=4, speckle_looks=None)
    out = degrade_intensity(i, cfg)
    assert out.shape == (2, 8, 12)
    np.testing.assert_array_equal(out, multilook_intensity(i, 4))
    # Hand-computed first box.
    assert out[0, 0, 0] == pytest.approx(i[0, :4, :4].mean())


def test_degrade_in_db_units_round_trips_a_constant() -> None:
    x = np.full((1, 16, 16), -7.5, dtype=np.float32)
    for lowpass in ("multilook", "gaussian"):
        out = degrade(x, units="db", quantity="intensity",
                      config=DegradationConfig(scale=2, lowpass=lowpass, speckle_looks=None))
        assert out.shape == (1, 8, 8)
        np.testing.assert_allclose(out, -7.5, atol=1e-5)


def test_coarse_speckle_has_the_requested_looks() -> None:
    # Constant intensity: after degradation only the added Gamma speckle varies.
    i = np.ones((512, 512))
    out = degrade_intensity(i, DegradationConfig(scale=2, speckle_looks=4.0), np.random.default_rng(1))
    enl = out.mean() ** 2 / out.var()
    assert out.mean() == pytest.approx(1.0, abs=0.01)
    assert enl == pytest.approx(4.0, rel=0.05)


def test_speckle_needs_an_rng_and_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="rng"):
        degrade_intensity(np.ones((8, 8)), DegradationConfig(scale=2))
    with pytest.raises(ConfigError, match="scale"):
        DegradationConfig(scale=3)
    with pytest.raises(ConfigError, match="lowpass"):
        DegradationConfig(lowpass="box")
    with pytest.raises(ConfigError, match="speckle_looks"):
        DegradationConfig(speckle_looks=0)
    assert DegradationConfig.from_dict(DegradationConfig(scale=8).to_dict()) == DegradationConfig(scale=8)


def test_pairs_shapes_spacing_and_metadata(hr_archive) -> None:
    cfg = PairConfig(archive=str(hr_archive), tile_px=64, val_scenes=("hr-2",),
                     degradation=DegradationConfig(scale=4, speckle_looks=4.4))
    train = PairSampler(cfg, "train")
    assert sorted(train.scene_ids) == ["hr-0", "hr-1"]
    pair = train.sample(3)
    assert pair["target"].shape == (1, 64, 64) and pair["target"].dtype == np.float32
    assert pair["condition"].shape == (1, 16, 16)
    assert pair["target_spacing_m"] == pytest.approx((1.0, 1.0))
    assert pair["condition_spacing_m"] == pytest.approx((4.0, 4.0))
    assert pair["meta"]["pixel_spacing_m"] == pytest.approx([4.0, 4.0])
    assert pair["meta"]["platform"] == "spaceborne"
    assert "4 m pixel spacing" not in pair["prompt"] and "1 m pixel spacing" in pair["prompt"]
    t, c = to_model_space(pair, cfg.normalisation)
    assert t.shape == (3, 64, 64) and c.shape == (3, 16, 16)
    assert 0.0 <= t.min() and t.max() <= 1.0


def test_pairs_are_deterministic_and_multilook_exactly_without_speckle(hr_archive) -> None:
    cfg = PairConfig(archive=str(hr_archive), tile_px=32,
                     degradation=DegradationConfig(scale=2, speckle_looks=None))
    s = PairSampler(cfg, "train")
    a, b = s.sample(11), s.sample(11)
    np.testing.assert_array_equal(a["target"], b["target"])
    assert a["window"] == b["window"]
    assert s.sample(12)["window"] != a["window"] or s.sample(12)["scene_id"] != a["scene_id"]
    looked = multilook_intensity(a["target"].astype(np.float64) ** 2, 2)
    np.testing.assert_allclose(a["condition"].astype(np.float64) ** 2, looked, rtol=1e-6)


def test_split_is_by_scene(hr_archive) -> None:
    cfg = PairConfig(archive=str(hr_archive), tile_px=64, val_scenes=("hr-1",))
    train, val = PairSampler(cfg, "train"), PairSampler(cfg, "val")
    assert set(train.scene_ids).isdisjoint(val.scene_ids)
    assert {p["scene_id"] for p in (val.sample(i) for i in range(10))} == {"hr-1"}
    assert "hr-1" not in {p["scene_id"] for p in (train.sample(i) for i in range(30))}
    # Hash split: stable, and a scene id always lands on the same side.
    hcfg = PairConfig(archive=str(hr_archive), tile_px=64, val_fraction=0.5)
    assert [is_validation_scene(s, hcfg) for s in ("hr-0", "hr-1", "hr-2")] == \
        [is_validation_scene(s, hcfg) for s in ("hr-0", "hr-1", "hr-2")]


def test_bad_pair_configs_name_the_fix(hr_archive) -> None:
    with pytest.raises(ConfigError, match="tile_px"):
        PairConfig(archive=str(hr_archive), tile_px=30, degradation=DegradationConfig(scale=4))
    with pytest.raises(ConfigError, match="val_scenes"):
        PairSampler(PairConfig(archive=str(hr_archive), val_scenes=("nope",)), "train")
    with pytest.raises(ConfigError, match="no scene"):
        PairSampler(PairConfig(archive=str(hr_archive), tile_px=512), "train")


def test_reflectivity_targets_are_the_local_mean_and_the_condition_stays_the_tile(hr_archive) -> None:
    """With target: reflectivity the network learns structure without speckle; the condition
    is still the degraded (speckled) tile, and the evaluation truth stays the tile itself."""
    from scipy.ndimage import uniform_filter

    base = dict(archive=str(hr_archive), tile_px=32, degradation=DegradationConfig(scale=2, speckle_looks=None))
    plain = PairSampler(PairConfig(**base), "train").sample(5)
    refl = PairSampler(PairConfig(**base, target="reflectivity"), "train").sample(5)
    np.testing.assert_array_equal(plain["target"], refl["target"])
    np.testing.assert_array_equal(plain["condition"], refl["condition"])
    i = plain["target"].astype(np.float64) ** 2  # linear amplitude scenes
    want = np.sqrt(uniform_filter(i, (1, 5, 5), mode="reflect"))
    np.testing.assert_allclose(refl["train_target"], want, rtol=1e-4)
    assert refl["train_target"].std() < 0.7 * plain["target"].std()
    with pytest.raises(ConfigError, match="`target` .* must be one of"):
        PairConfig(**base, target="despeckled")
