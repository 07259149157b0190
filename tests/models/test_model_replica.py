"""The tiny replica end to end on real Sentinel-1 and Umbra tiles: shapes, units, NaN,
determinism across batches, orders and replicas, simulated-to-real mode, error paths."""

from __future__ import annotations

import numpy as np
import pytest

from sarray.errors import ConfigError, ReplicaError
from sarray.testing.models import batch_of, speckle_scene, tiny_replica



def test_spain_dual_pol_db_end_to_end(tiny, spain):
    tile, meta = spain
    tiles = np.stack([tile[:, :32, :32], tile[:, 32:64, 32:64]])
    out = tiny(batch_of(tiles, meta))
    y = out["output"]
    assert y.shape == (2, 2, 128, 128) and y.dtype == np.float32
    assert np.isfinite(y).all()
    # Still sigma0 in dB, in a plausible range; VH below VV on average as in the input.
    assert -90 < y.min() and y.max() < 40
    assert y[:, 1].mean() < y[:, 0].mean()
    np.testing.assert_allclose(out["output_spacing_m"], [[2.5, 2.5], [2.5, 2.5]])
    assert out["prompt"][0].startswith("airborne SAR amplitude image, C-band, VV+VH polarisation, 2.5 m")
    assert out["seed"].dtype == np.uint64 and out["seed"][0] != out["seed"][1]
    assert out["tiles"] is tiles  # inputs pass through untouched


def test_umbra_single_pol_dn(umbra):
    tile, meta = umbra
    rep = tiny_replica(scale=2)
    out = rep(batch_of(tile[None, :, :32, :32], meta, scene="umbra"))["output"]
    assert out.shape == (1, 1, 64, 64)
    assert np.isfinite(out).all() and out.min() >= 0  # DN are amplitudes


@pytest.mark.parametrize("scale,edge", [(1, 32), (2, 16), (4, 8), (8, 4)])
def test_scales(scale, edge, spain):
    tile, meta = spain
    rep = tiny_replica(scale=scale)
    out = rep(batch_of(tile[None, :, :edge, :edge], meta))
    assert out["output"].shape == (1, 2, edge * scale, edge * scale)
    np.testing.assert_allclose(out["output_spacing_m"][0], [10.0 / scale] * 2)


def test_nodata_does_not_poison_output(tiny, spain):
    tile, meta = spain
    t = tile[:, :32, :32].copy()
    t[:, 4:8, 10:20] = np.nan
    t[1, 20, 20] = np.nan  # one pol only
    y = tiny(batch_of(t[None], meta))["output"][0]
    expected = np.isnan(t).repeat(4, axis=1).repeat(4, axis=2)
    np.testing.assert_array_equal(np.isnan(y), expected)


def test_all_nodata_tile_is_all_nan(tiny, spain):
    tile, meta = spain
    tiles = np.stack([np.full_like(tile[:, :16, :16], np.nan), tile[:, :16, :16]])
    y = tiny(batch_of(tiles, meta))["output"]
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


def test_identical_output_in_any_batch_order_or_replica(tiny, spain):
    tile, meta = spain
    tiles = np.stack([tile[:, r:r + 16, c:c + 16] for r in (0, 16) for c in (0, 16, 32)])
    full = tiny(batch_of(tiles, meta))["output"]
    # One by one.
    for i in range(len(tiles)):
        one = tiny({"tiles": tiles[i:i + 1], "scene_id": ["scene-a"], "tile_index": [i], "meta": meta})
        np.testing.assert_array_equal(one["output"][0], full[i])
    # Reversed order, in batches of two, on another replica built from the same seed.
    other = tiny_replica(scale=4)
    order = list(range(len(tiles)))[::-1]
    for k in range(0, len(order), 2):
        idx = order[k:k + 2]
        out = other({"tiles": tiles[idx], "scene_id": ["scene-a"] * len(idx),
                     "tile_index": np.array(idx), "meta": [meta] * len(idx)})
        np.testing.assert_array_equal(out["output"], full[idx])
    # The tile key, not the pixels alone, seeds the noise.
    moved = tiny({"tiles": tiles[:1], "scene_id": ["scene-b"], "tile_index": [0], "meta": meta})
    assert not np.array_equal(moved["output"][0], full[0])
    reseeded = tiny_replica(scale=4, seed=1)(batch_of(tiles[:1], meta))
    assert not np.array_equal(reseeded["output"][0], full[0])


def test_micro_batches_run_and_match_closely(spain):
    tile, meta = spain
    tiles = np.stack([tile[:, :16, :16], tile[:, 16:32, :16], tile[:, 32:48, :16]])
    exact = tiny_replica(scale=4)(batch_of(tiles, meta))["output"]
    fast = tiny_replica(scale=4, micro_batch=4)(batch_of(tiles, meta))["output"]
    # Batched CPU kernels differ in the last bits; dB magnifies that near zero amplitude.
    assert np.median(np.abs(fast - exact)) < 1e-3
    np.testing.assert_allclose(fast, exact, atol=0.5)


def test_controlnet_condition_matters(spain):
    tile, meta = spain
    b = batch_of(tile[None, :, :16, :16], meta)
    on = tiny_replica(scale=4)(b)["output"]
    off = tiny_replica(scale=4, controlnet_scale=0.0)(b)["output"]
    assert not np.array_equal(on, off)


def test_simulated_to_real_mode():
    values, meta = speckle_scene((32, 32), pols=("HH",), platform="simulated", sensor="EMPRISE")
    rep = tiny_replica(scale=1, strength=0.5, simulated_strength=1.0, num_inference_steps=4)
    out = rep(batch_of(values[None], meta, scene="sim"))
    assert out["output"].shape == (1, 1, 32, 32) and np.isfinite(out["output"]).all()
    assert "simulated scene" in out["prompt"][0]
    as_satellite = rep(batch_of(values[None], {**meta, "platform": "spaceborne"}, scene="sim"))
    assert "simulated" not in as_satellite["prompt"][0]
    assert not np.array_equal(out["output"], as_satellite["output"])


@pytest.mark.parametrize("units,quantity", [("linear", "intensity"), ("linear", "amplitude"), ("dn", "unknown")])
def test_linear_and_dn_units(tiny, units, quantity):
    values, meta = speckle_scene((16, 16), units=units, quantity="amplitude" if quantity == "unknown" else quantity)
    meta["quantity"] = quantity
    y = tiny(batch_of(values[None], meta))["output"]
    assert y.shape == (1, 2, 64, 64) and np.isfinite(y).all() and y.min() >= 0


def test_translate_tile(tiny, spain):
    tile, meta = spain
    t = tile[:, :16, :16]
    y = tiny.translate_tile(t, scene_id="scene-a", tile_index=0, meta=meta)
    np.testing.assert_array_equal(y, tiny(batch_of(t[None], meta))["output"][0])


def _bad_batches(tile, meta):
    t = tile[None, :, :16, :16]
    yield {"tiles": t, "scene_id": ["a"], "meta": meta}, "keys"
    yield {**batch_of(t, meta), "tiles": t[0]}, "\\(N, P, h, w\\)"
    yield batch_of(tile[None, :, :6, :8], meta), "multiples of 16"
    yield {**batch_of(t, meta), "scene_id": ["a", "b"]}, "scene_id.*one entry per tile \\(1\\), got 2"
    yield {**batch_of(t, meta), "tile_index": [1.5]}, "`tile_index`"
    yield batch_of(t, {**meta, "polarisations": ["VV"]}), "2 polarisation planes"
    yield batch_of(t, {**meta, "statistics": None}), "statistics.*compute_statistics"
    yield batch_of(t, {"units": "db"}), "lacks"
    yield batch_of(np.concatenate([t, t[:, :1]], axis=1), {**meta, "polarisations": ["VV", "VH", "HH"]}), "one or two"


def test_batch_errors(tiny, spain):
    tile, meta = spain
    for batch, match in _bad_batches(tile, meta):
        with pytest.raises(ConfigError, match=match):
            tiny(batch)


def test_model_failure_names_the_tile(spain, monkeypatch):
    tile, meta = spain
    rep = tiny_replica(scale=4)

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(rep.pipe.unet, "forward", boom)
    with pytest.raises(ReplicaError, match="tile \\('scene-a', 7\\): RuntimeError: out of memory"):
        rep(batch_of(tile[None, :, :16, :16], meta, start=7))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_dtypes_run(dtype, spain):
    tile, meta = spain
    y = tiny_replica(scale=4, dtype=dtype)(batch_of(tile[None, :, :16, :16], meta))["output"]
    assert y.dtype == np.float32 and np.isfinite(y).all()
